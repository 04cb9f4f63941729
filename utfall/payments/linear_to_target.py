"""`linear_to_target`: pays in proportion to the improvement achieved, in full at the target.

    achievement = clamp(improvement / target_relative_reduction, 0, 1)
    achievement = min(achievement, share the evidence allows)     (threshold basis)
    due = amount x achievement

`improvement` is the relative improvement in the desired direction at the point the plan's
basis reads (the point estimate or the least favourable confidence bound), as a Decimal
rounded to 0.0001. A worse outcome pays 0; above the target the amount is capped.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from utfall.payments.base import (
    MONEY,
    Due,
    Inputs,
    Rule,
    clamp,
    decimal,
    positive,
    require_improvement,
    show,
)

TARGET = {
    "type": "number",
    "exclusiveMinimum": 0,
    "maximum": 1,
    "description": "the relative improvement paid in full (0.12 = 12 %)",
}


def pay(rule: Mapping[str, Any], inputs: Inputs) -> Due:
    amount = Decimal(rule["amount"])
    target = decimal(rule["target_relative_reduction"])
    improvement = require_improvement(inputs, "linear_to_target")
    achievement = clamp(improvement / target, Decimal(0), Decimal(1))
    steps = [f"improvement {improvement} / target {target}, clamped to 0..1 = {show(achievement)}"]
    cap = inputs.evidence_share
    if cap is not None:
        if cap < achievement:
            steps.append(f"capped at the share the evidence allows, {show(cap)}")
        achievement = min(achievement, cap)
    return Due(amount * achievement, achievement, steps)


RULE = Rule(
    kind="linear_to_target",
    description="pays amount x improvement / target, clamped to 0..1",
    parameters={
        "amount": {**MONEY, "description": "the amount paid at or above the target"},
        "target_relative_reduction": TARGET,
    },
    required=("amount", "target_relative_reduction"),
    reads=frozenset({"effect"}),
    pay=pay,
    maximum=lambda rule: Decimal(rule["amount"]),
    check=lambda rule: positive(rule, "amount"),
)
