"""The proposed outcome payment under the plan's terms, in exact decimal money.

The measured improvement is taken from the effect estimate (point estimate, or the
confidence bound least favourable to the provider when the plan says
`conservative_ci_bound`), rounded to four decimals (0.01 percentage points) as a Decimal,
so the money that follows is exact and reproducible. Each amount is computed from the
unrounded share, then rounded once to öre with banker's rounding (ROUND_HALF_EVEN). The
payment is *proposed*: it becomes due only when the independent validator approves it.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from utfall.plan import Plan

CENT = Decimal("0.01")
SHARE = Decimal("0.0001")


def measured_improvement(plan: Plan, effect: Mapping[str, Any]) -> Decimal:
    """Relative improvement in the desired direction (0.12 = 12 % better than counterfactual).

    `effect` is an effect result as stored (EffectResult.to_dict()).
    """
    decrease = plan.outcome(effect["outcome"])["desired_direction"] == "decrease"
    conservative = plan.payment["basis"] == "conservative_ci_bound"
    if decrease:
        rel = effect["relative_ci_high"] if conservative else effect["relative_estimate"]
        improvement = -rel
    else:
        improvement = effect["relative_ci_low"] if conservative else effect["relative_estimate"]
    return Decimal(repr(float(improvement))).quantize(SHARE, rounding=ROUND_HALF_EVEN)


def _show(share: Decimal) -> str:
    """A share for display; the amount is computed from the unrounded value."""
    return str(share.quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN))


def propose(plan: Plan, effect: Mapping[str, Any]) -> dict[str, Any]:
    """Each rule's amount and the total; money as strings of exact decimals."""
    terms = plan.payment
    improvement = measured_improvement(plan, effect)
    lines = []
    for i, rule in enumerate(terms["rules"]):
        amount = Decimal(rule["amount"])
        if rule["kind"] == "fixed":
            achievement = Decimal(1)
            explanation = "fixed amount"
        elif rule["kind"] == "linear_to_target":
            target = Decimal(repr(float(rule["target_relative_reduction"])))
            achievement = min(Decimal(1), max(Decimal(0), improvement / target))
            explanation = (
                f"improvement {improvement} / target {target}, clamped to 0..1 = "
                f"{_show(achievement)}"
            )
        else:  # pragma: no cover - the plan schema admits no other kind
            raise ValueError(f"unknown payment rule kind {rule['kind']!r}")
        paid = (amount * achievement).quantize(CENT, rounding=ROUND_HALF_EVEN)
        lines.append(
            {
                "rule": i,
                "kind": rule["kind"],
                "description": rule.get("description", ""),
                "max_amount": str(amount.quantize(CENT)),
                "achievement": _show(achievement),
                "amount": str(paid),
                "explanation": explanation,
            }
        )
    total = sum((Decimal(line["amount"]) for line in lines), Decimal(0)).quantize(CENT)
    maximum = sum((Decimal(line["max_amount"]) for line in lines), Decimal(0)).quantize(CENT)
    return {
        "currency": terms["currency"],
        "outcome": effect["outcome"],
        "basis": terms["basis"],
        "measured_improvement": str(improvement),
        "lines": lines,
        "total": str(total),
        "maximum": str(maximum),
        "status": "proposed",
    }
