"""`fixed`: a fixed amount, due in full whatever the outcome (e.g. the provider's base fee).

    due = amount

With payment periods it is due in full from the first period on, so the first period pays it
and later ones pay nothing more (cumulative due minus what was paid).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from utfall.payments.base import MONEY, Due, Inputs, Rule, positive


def pay(rule: Mapping[str, Any], _inputs: Inputs) -> Due:
    return Due(Decimal(rule["amount"]), Decimal(1), ["fixed amount"])


RULE = Rule(
    kind="fixed",
    description="a fixed amount, due in full whatever the outcome",
    parameters={"amount": {**MONEY, "description": "the amount (a decimal string)"}},
    required=("amount",),
    pay=pay,
    maximum=lambda rule: Decimal(rule["amount"]),
    check=lambda rule: positive(rule, "amount"),
)
