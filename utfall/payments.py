"""The proposed outcome payment under the plan's terms, in exact decimal money.

An effect estimate is uncertain; paying on the point estimate alone pays for noise (with no
true effect the estimate still falls on the provider's side half of the time). The plan's
`payment.basis` says how the uncertainty is handled:

* `point_estimate`: the variable (linear_to_target) rules pay on the point estimate;
* `conservative_ci_bound`: they pay on the confidence bound least favourable to the
  provider (the upper bound of a reduction that should decrease);
* `threshold`: they pay on the point estimate, but only when the least favourable bound is
  better than `threshold_relative_reduction` (default 0: the improvement is significant at
  the plan's confidence); otherwise they pay 0. With `tiers` (steps of
  `{min_relative_reduction, share}`, ascending) the variable rules pay at most the share of
  the highest step the least favourable bound is better than (0 below the first step), and
  never more than the point estimate earns: achievement = min(point achievement, share).

Every improvement is taken from the effect estimate as a relative improvement in the
desired direction, rounded to four decimals (0.01 percentage points) as a Decimal; the
plan's thresholds are read as the Decimal of their written form, so every comparison and
amount is exact and reproducible. Each amount is computed from the unrounded share, then
rounded once to öre with banker's rounding (ROUND_HALF_EVEN). Fixed rules pay in full
whatever the basis.

Beside the proposal, `range` gives the payment as if the improvement were the least
favourable bound, the point estimate and the most favourable bound (what the interval
allows), so a validator sees how much of the amount rests on noise. The payment is
*proposed*: it becomes due only when the independent validator approves it.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from utfall.plan import Plan

CENT = Decimal("0.01")
SHARE = Decimal("0.0001")
BASES = ("point_estimate", "conservative_ci_bound", "threshold")
#: Where in the confidence interval an improvement is read.
POINTS = ("least_favourable", "point_estimate", "most_favourable")


def _decimal(x: float | int) -> Decimal:
    """The Decimal of a number as written (0.12 -> Decimal('0.12'), not its binary value)."""
    return Decimal(repr(float(x))) if not isinstance(x, int) else Decimal(x)


def _fmt(x: Decimal) -> str:
    """A threshold for display, with as many decimals as an improvement (at least)."""
    return str(x.quantize(SHARE) if x == x.quantize(SHARE) else x)


def improvement_at(plan: Plan, effect: Mapping[str, Any], point: str) -> Decimal:
    """The relative improvement in the desired direction (0.12 = 12 % better than the
    counterfactual) at `point`: `least_favourable` (the confidence bound least favourable to
    the provider), `point_estimate` or `most_favourable`; rounded to 0.0001.

    `effect` is an effect result as stored (EffectResult.to_dict()).
    """
    decrease = plan.outcome(effect["outcome"])["desired_direction"] == "decrease"
    sign = -1 if decrease else 1
    if point == "point_estimate":
        value = sign * effect["relative_estimate"]
    else:
        bounds = sorted(sign * effect[k] for k in ("relative_ci_low", "relative_ci_high"))
        value = bounds[0] if point == "least_favourable" else bounds[1]
    return _decimal(float(value)).quantize(SHARE, rounding=ROUND_HALF_EVEN)


def measured_improvement(plan: Plan, effect: Mapping[str, Any]) -> Decimal:
    """The improvement the variable rules pay on under the plan's basis: the least
    favourable bound for `conservative_ci_bound`, else the point estimate."""
    point = (
        "least_favourable" if plan.payment["basis"] == "conservative_ci_bound" else "point_estimate"
    )
    return improvement_at(plan, effect, point)


def _show(share: Decimal) -> str:
    """A share for display; the amount is computed from the unrounded value."""
    return str(share.quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN))


def evidence_share(terms: Mapping[str, Any], bound: Decimal) -> tuple[Decimal, str]:
    """Under the threshold basis: the largest share of the variable amount the least
    favourable bound allows (1 without tiers, 0 when the threshold is not cleared), and why."""
    threshold = _decimal(terms.get("threshold_relative_reduction", 0))
    if not bound > threshold:
        return Decimal(0), (
            f"the least favourable bound {bound} is not better than the threshold "
            f"{_fmt(threshold)}: the variable part pays 0"
        )
    tiers = terms.get("tiers")
    if not tiers:
        return Decimal(1), (
            f"the least favourable bound {bound} is better than the threshold {_fmt(threshold)}: "
            "the variable part pays on the point estimate"
        )
    cleared = [t for t in tiers if bound > _decimal(t["min_relative_reduction"])]
    if not cleared:
        return Decimal(0), (
            f"the least favourable bound {bound} clears the threshold {_fmt(threshold)} but no "
            f"tier (the first starts at {_fmt(_decimal(tiers[0]['min_relative_reduction']))}): "
            "the variable part pays 0"
        )
    top = cleared[-1]
    share = _decimal(top["share"])
    return share, (
        f"the least favourable bound {bound} is better than the tier at "
        f"{_fmt(_decimal(top['min_relative_reduction']))}: the variable part pays at most "
        f"{share} of its amount, and no more than the point estimate earns"
    )


def _lines(
    terms: Mapping[str, Any], improvement: Decimal, cap: Decimal | None = None
) -> list[dict[str, Any]]:
    """Each rule's line when the variable rules pay on `improvement`, their achievement
    capped at `cap` (the share the evidence allows) when given."""
    lines = []
    for i, rule in enumerate(terms["rules"]):
        amount = Decimal(rule["amount"])
        if rule["kind"] == "fixed":
            achievement = Decimal(1)
            explanation = "fixed amount"
        elif rule["kind"] == "linear_to_target":
            target = _decimal(rule["target_relative_reduction"])
            achievement = min(Decimal(1), max(Decimal(0), improvement / target))
            explanation = (
                f"improvement {improvement} / target {target}, clamped to 0..1 = "
                f"{_show(achievement)}"
            )
            if cap is not None:
                if cap < achievement:
                    explanation += f"; capped at the share the evidence allows, {_show(cap)}"
                achievement = min(achievement, cap)
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
    return lines


def _total(lines: list[dict[str, Any]], key: str = "amount") -> Decimal:
    return sum((Decimal(line[key]) for line in lines), Decimal(0)).quantize(CENT)


def _variable(lines: list[dict[str, Any]]) -> Decimal:
    return _total([line for line in lines if line["kind"] != "fixed"])


def propose(
    plan: Plan, effect: Mapping[str, Any], terms: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Each rule's amount and the total; money as strings of exact decimals.

    `terms` replaces the plan's payment terms (to compare bases on one stored effect, as
    the simulation and design tools do); by default the plan's own terms apply.
    """
    terms = plan.payment if terms is None else terms
    basis = terms["basis"]
    at = {p: improvement_at(plan, effect, p) for p in POINTS}
    decision: dict[str, Any]
    if basis == "point_estimate":
        improvement, cap = at["point_estimate"], None
        decision = {"pays_on": "point_estimate", "reason": "paid on the point estimate"}
    elif basis == "conservative_ci_bound":
        improvement, cap = at["least_favourable"], None
        decision = {
            "pays_on": "least_favourable",
            "reason": "paid on the confidence bound least favourable to the provider",
        }
    elif basis == "threshold":
        improvement = at["point_estimate"]
        cap, reason = evidence_share(terms, at["least_favourable"])
        decision = {
            "pays_on": "point_estimate",
            "threshold_relative_reduction": _fmt(
                _decimal(terms.get("threshold_relative_reduction", 0))
            ),
            "share_allowed": _show(cap),
            "reason": reason,
        }
    else:  # pragma: no cover - the plan schema admits no other basis
        raise ValueError(f"unknown payment basis {basis!r}")
    lines = _lines(terms, improvement, cap)
    payment_range = []
    for p in POINTS:
        at_lines = _lines(terms, at[p])
        payment_range.append(
            {
                "at": p,
                "improvement": str(at[p]),
                "variable": str(_variable(at_lines)),
                "total": str(_total(at_lines)),
            }
        )
    return {
        "currency": terms["currency"],
        "outcome": effect["outcome"],
        "basis": basis,
        "decision": decision,
        "confidence": effect.get("confidence"),
        "measured_improvement": str(improvement),
        "lines": lines,
        "total": str(_total(lines)),
        "variable": str(_variable(lines)),
        "maximum": str(_total(lines, "max_amount")),
        "variable_maximum": str(_total([x for x in lines if x["kind"] != "fixed"], "max_amount")),
        "range": payment_range,
        "status": "proposed",
    }
