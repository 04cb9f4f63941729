"""`threshold_tiers`: nothing below a threshold, linear between tiers, a maximum.

The tiers are points (min_relative_reduction r_i, share s_i), ascending. With x the
improvement the plan's basis reads:

    share = 0                                            if x < r_0  (the threshold)
    share = s_i + (s_{i+1} - s_i) (x - r_i) / (r_{i+1} - r_i)   if r_i <= x < r_{i+1}
    share = s_last                                       if x >= r_last (the maximum)
    due   = amount x share

A tier is reached when the improvement is **at least** its reduction (a contract's "at least
12 %"). With `bound_must_clear: true` the confidence bound least favourable to the provider
must also be at least r_0, else the rule pays 0; under the plan's threshold basis the share
is further capped by the share the evidence allows. Improvements are Decimals rounded to
0.0001 and tiers the Decimals of their written form, so a boundary is exact.
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
    fmt,
    positive,
    require_improvement,
    show,
)


def _tiers(rule: Mapping[str, Any]) -> list[tuple[Decimal, Decimal]]:
    return [(decimal(t["min_relative_reduction"]), decimal(t["share"])) for t in rule["tiers"]]


def share_at(tiers: list[tuple[Decimal, Decimal]], x: Decimal) -> tuple[Decimal, str]:
    """The share of the amount an improvement `x` earns, and how."""
    first = tiers[0][0]
    if x < first:
        return Decimal(0), f"improvement {x} is below the threshold {fmt(first)}: share 0"
    for (r0, s0), (r1, s1) in zip(tiers, tiers[1:], strict=False):
        if r0 <= x < r1:
            share = s0 + (s1 - s0) * (x - r0) / (r1 - r0)
            return share, (
                f"improvement {x} lies between the tiers at {fmt(r0)} (share {s0}) and "
                f"{fmt(r1)} (share {s1}): {s0} + ({s1} - {s0}) x ({x} - {fmt(r0)}) / "
                f"({fmt(r1)} - {fmt(r0)}) = {show(share)}"
            )
    r, s = tiers[-1]
    return s, f"improvement {x} is at or above the top tier {fmt(r)}: share {s} (the maximum)"


def pay(rule: Mapping[str, Any], inputs: Inputs) -> Due:
    amount = Decimal(rule["amount"])
    tiers = _tiers(rule)
    x = require_improvement(inputs, "threshold_tiers")
    share, step = share_at(tiers, x)
    steps = [step]
    bound = inputs.least_favourable
    if rule.get("bound_must_clear", False) and share > 0:
        assert bound is not None
        if bound < tiers[0][0]:
            share = Decimal(0)
            steps.append(
                f"the least favourable bound {bound} does not reach the threshold "
                f"{fmt(tiers[0][0])}: share 0"
            )
        else:
            steps.append(f"the least favourable bound {bound} reaches the threshold")
    cap = inputs.evidence_share
    if cap is not None and cap < share:
        steps.append(f"capped at the share the evidence allows, {show(cap)}")
        share = cap
    steps.append(f"{amount} x {show(share)}")
    top = tiers[-1][1]
    # achievement: the share of the rule's maximum (amount x the top tier's share)
    return Due(amount * share, share / top if top else Decimal(0), steps)


def check(rule: Mapping[str, Any]) -> list[tuple[str, str]]:
    problems = positive(rule, "amount")
    tiers = rule["tiers"]
    for j in range(1, len(tiers)):
        now, before = tiers[j], tiers[j - 1]
        if now["min_relative_reduction"] <= before["min_relative_reduction"]:
            problems.append(
                (
                    f"tiers[{j}].min_relative_reduction",
                    f"{now['min_relative_reduction']!r} is not above the previous tier's "
                    f"{before['min_relative_reduction']!r}; list tiers in ascending order",
                )
            )
        if now["share"] < before["share"]:
            problems.append(
                (
                    f"tiers[{j}].share",
                    f"{now['share']!r} is below the previous tier's {before['share']!r}; a "
                    "better result must not pay a smaller share",
                )
            )
    return problems


RULE = Rule(
    kind="threshold_tiers",
    description="nothing below the first tier, linear between tiers, the last tier's share above",
    parameters={
        "amount": {**MONEY, "description": "the amount a share of 1 pays"},
        "tiers": {
            "type": "array",
            "minItems": 1,
            "description": "ascending points; the first is the threshold, the last the maximum",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["min_relative_reduction", "share"],
                "properties": {
                    "min_relative_reduction": {
                        "type": "number",
                        "minimum": 0,
                        "exclusiveMaximum": 1,
                    },
                    "share": {"type": "number", "minimum": 0, "maximum": 1},
                },
            },
        },
        "bound_must_clear": {
            "type": "boolean",
            "description": "the least favourable confidence bound must reach the threshold too",
        },
    },
    required=("amount", "tiers"),
    reads=frozenset({"effect"}),
    pay=pay,
    maximum=lambda rule: Decimal(rule["amount"]) * decimal(rule["tiers"][-1]["share"]),
    check=check,
)
