"""`guaranteed_conditional`: an investor's capital repaid in a guaranteed and a conditional
part, with the return over the term held between a floor and a cap.

With capital C, guaranteed share g and conditional share c (g + c = 1, e.g. 0.4 / 0.6),
target t, return cap R+ and optional floor R- (e.g. +0.10 / -0.20):

    guaranteed  = g x C
    achievement = max(0, improvement / t)              (not capped at 1: beating the
                                                        target earns a positive return)
    conditional = c x C x achievement, at most C x (1 + R+) - g x C
                  (and at most the share the evidence allows of that, threshold basis)
    repayment   = guaranteed + conditional, at least C x (1 + R-) when a floor is given
    return      = repayment / C - 1, so R- <= return <= R+

Missing the target entirely repays the guaranteed part (or the floor, whichever is more);
meeting it exactly repays the capital (return 0); the cap bounds the upside. The floor is a
contractual guarantee, so it holds even when the evidence allows no conditional payment.
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
    decimal,
    money,
    positive,
    require_improvement,
    show,
)
from utfall.payments.linear_to_target import TARGET

RETURN = {"type": "number", "minimum": -1, "maximum": 10}


def _max(rule: Mapping[str, Any]) -> Decimal:
    return Decimal(rule["capital"]) * (1 + decimal(rule["return_cap"]))


def pay(rule: Mapping[str, Any], inputs: Inputs) -> Due:
    capital = Decimal(rule["capital"])
    g, c = decimal(rule["guaranteed_share"]), decimal(rule["conditional_share"])
    target = decimal(rule["target_relative_reduction"])
    improvement = require_improvement(inputs, "guaranteed_conditional")
    guaranteed = g * capital
    achievement = max(Decimal(0), improvement / target)
    conditional = c * capital * achievement
    steps = [
        f"guaranteed part {g} x {capital} = {money(guaranteed)}",
        f"achievement max(0, improvement {improvement} / target {target}) = {show(achievement)}; "
        f"conditional part {c} x {capital} x {show(achievement)} = {money(conditional)}",
    ]
    room = _max(rule) - guaranteed
    if conditional > room:
        steps.append(
            f"capped where the return reaches the cap {decimal(rule['return_cap'])}: {money(room)}"
        )
        conditional = room
    evidence = inputs.evidence_share
    if evidence is not None and conditional > evidence * room:
        steps.append(
            f"capped at the share the evidence allows, {show(evidence)} x {room} = "
            f"{money(evidence * room)}"
        )
        conditional = evidence * room
    repayment = guaranteed + conditional
    steps.append(
        f"repayment {money(repayment)}: a return of {show(repayment / capital - 1)} on the capital"
    )
    if "return_floor" in rule:
        floor = capital * (1 + decimal(rule["return_floor"]))
        if repayment < floor:
            steps.append(f"raised to the floor {decimal(rule['return_floor'])}: {money(floor)}")
            repayment = floor
    return Due(repayment, repayment / _max(rule), steps)


def check(rule: Mapping[str, Any]) -> list[tuple[str, str]]:
    problems = positive(rule, "capital")
    g, c = decimal(rule["guaranteed_share"]), decimal(rule["conditional_share"])
    if g + c != 1:
        problems.append(
            (
                "conditional_share",
                f"guaranteed_share {g} + conditional_share {c} = {g + c}; the two parts split "
                "the capital's repayment, so they must sum to 1",
            )
        )
    cap = decimal(rule["return_cap"])
    if "return_floor" in rule and cap < decimal(rule["return_floor"]):
        problems.append(
            (
                "return_cap",
                f"{rule['return_cap']!r} is below return_floor {rule['return_floor']!r}; "
                "the cap on the return must be at least its floor",
            )
        )
    elif cap < g - 1:
        problems.append(
            (
                "return_cap",
                f"{rule['return_cap']!r} is below the return the guaranteed part already "
                f"gives ({g - 1}); the cap must be at least guaranteed_share - 1",
            )
        )
    return problems


RULE = Rule(
    kind="guaranteed_conditional",
    description="capital repaid in a guaranteed and a conditional part, return within a "
    "floor and a cap",
    parameters={
        "capital": {**MONEY, "description": "the invested capital"},
        "guaranteed_share": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "the share of the capital repaid whatever the outcome (0.4 = 40 %)",
        },
        "conditional_share": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "the share repaid in proportion to improvement / target (0.6)",
        },
        "target_relative_reduction": TARGET,
        "return_cap": {
            "type": "number",
            "exclusiveMinimum": -1,
            "maximum": 10,
            "description": "the highest return on the capital over the term (0.10 = +10 %)",
        },
        "return_floor": {
            **RETURN,
            "description": "the lowest return on the capital over the term (-0.20 = -20 %); "
            "without it the guaranteed part is the floor",
        },
    },
    required=(
        "capital",
        "guaranteed_share",
        "conditional_share",
        "target_relative_reduction",
        "return_cap",
    ),
    reads=frozenset({"effect"}),
    pay=pay,
    maximum=_max,
    check=check,
)
