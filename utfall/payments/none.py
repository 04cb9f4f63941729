"""`none`: a follow-up report only (e.g. an IOP partnership): no payment follows.

The proposal then holds one line of 0.00 whose explanation, and the decision's reason, say
that no payment follows and why (the plan's `reason`). A plan with a `none` rule has no
other rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from utfall.payments.base import Due, Inputs, Rule


def pay(rule: Mapping[str, Any], _inputs: Inputs) -> Due:
    return Due(
        Decimal(0),
        Decimal(0),
        [f"follow-up report only, no payment follows: {rule['reason']}"],
    )


RULE = Rule(
    kind="none",
    description="a follow-up report only: no payment follows",
    parameters={
        "reason": {
            "type": "string",
            "minLength": 1,
            "description": "why no payment follows (e.g. an IOP partnership follows outcomes up)",
        }
    },
    required=("reason",),
    pay=pay,
    maximum=lambda _rule: Decimal(0),
)
