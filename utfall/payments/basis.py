"""Where in an effect estimate the rules read the improvement: the plan's `payment.basis`.

An effect estimate is uncertain; paying on the point estimate alone pays for noise (with no
true effect the estimate still falls on the provider's side half of the time). The basis
says how the uncertainty is handled by every rule that pays on the effect:

* `point_estimate`: on the point estimate;
* `conservative_ci_bound`: on the confidence bound least favourable to the provider (the
  upper bound of a reduction that should decrease);
* `threshold`: on the point estimate, but only when the least favourable bound is better
  than `threshold_relative_reduction` (default 0: the improvement is significant at the
  plan's confidence); otherwise they pay 0. With `tiers` (steps of
  `{min_relative_reduction, share}`, ascending) they pay at most the share of the highest
  step the least favourable bound is better than (0 below the first step), and never more
  than the point estimate earns: achievement = min(point achievement, share).

Every improvement is taken from the effect estimate as a relative improvement in the desired
direction, rounded to four decimals (0.01 percentage points) as a Decimal; the plan's
thresholds are read as the Decimal of their written form, so every comparison is exact and
reproducible. An effect in outcome units (a cost per person) is read the same way, rounded
to 0.0001 of its unit.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

from utfall.payments.base import SHARE, decimal, fmt, show

if TYPE_CHECKING:
    from utfall.plan import Plan

BASES = ("point_estimate", "conservative_ci_bound", "threshold")
#: Where in the confidence interval an improvement is read.
POINTS = ("least_favourable", "point_estimate", "most_favourable")


def _read(plan: Plan, effect: Mapping[str, Any], point: str, keys: tuple[str, ...]) -> Decimal:
    decrease = plan.outcome(effect["outcome"])["desired_direction"] == "decrease"
    sign = -1 if decrease else 1
    if point == "point_estimate":
        value = sign * effect[keys[0]]
    else:
        bounds = sorted(sign * effect[k] for k in keys[1:])
        value = bounds[0] if point == "least_favourable" else bounds[1]
    return decimal(float(value)).quantize(SHARE, rounding=ROUND_HALF_EVEN)


def improvement_at(plan: Plan, effect: Mapping[str, Any], point: str) -> Decimal:
    """The relative improvement in the desired direction (0.12 = 12 % better than the
    counterfactual) at `point`: `least_favourable` (the confidence bound least favourable to
    the provider), `point_estimate` or `most_favourable`; rounded to 0.0001.

    `effect` is an effect result as stored (EffectResult.to_dict()).
    """
    return _read(plan, effect, point, ("relative_estimate", "relative_ci_low", "relative_ci_high"))


def absolute_at(plan: Plan, effect: Mapping[str, Any], point: str) -> Decimal:
    """The effect in outcome units, in the desired direction (a cost that fell by 1 200 SEK
    per person is +1200), at `point`; rounded to 0.0001."""
    # + 0: a saving of exactly 0 reads 0.0000, not -0.0000 (relative improvements keep their
    # historical form, which the pinned proposals show)
    return _read(plan, effect, point, ("estimate", "ci_low", "ci_high")) + 0


def measured_improvement(plan: Plan, effect: Mapping[str, Any]) -> Decimal:
    """The improvement the rules pay on under the plan's basis: the least favourable bound
    for `conservative_ci_bound`, else the point estimate."""
    point = (
        "least_favourable" if plan.payment["basis"] == "conservative_ci_bound" else "point_estimate"
    )
    return improvement_at(plan, effect, point)


def evidence_share(terms: Mapping[str, Any], bound: Decimal) -> tuple[Decimal, str]:
    """Under the threshold basis: the largest share of the variable amount the least
    favourable bound allows (1 without tiers, 0 when the threshold is not cleared), and why."""
    threshold = decimal(terms.get("threshold_relative_reduction", 0))
    if not bound > threshold:
        return Decimal(0), (
            f"the least favourable bound {bound} is not better than the threshold "
            f"{fmt(threshold)}: the variable part pays 0"
        )
    tiers = terms.get("tiers")
    if not tiers:
        return Decimal(1), (
            f"the least favourable bound {bound} is better than the threshold {fmt(threshold)}: "
            "the variable part pays on the point estimate"
        )
    cleared = [t for t in tiers if bound > decimal(t["min_relative_reduction"])]
    if not cleared:
        return Decimal(0), (
            f"the least favourable bound {bound} clears the threshold {fmt(threshold)} but no "
            f"tier (the first starts at {fmt(decimal(tiers[0]['min_relative_reduction']))}): "
            "the variable part pays 0"
        )
    top = cleared[-1]
    share = decimal(top["share"])
    return share, (
        f"the least favourable bound {bound} is better than the tier at "
        f"{fmt(decimal(top['min_relative_reduction']))}: the variable part pays at most "
        f"{share} of its amount, and no more than the point estimate earns"
    )


def decide(terms: Mapping[str, Any], at: Mapping[str, Decimal]) -> tuple[str, Decimal | None, dict]:
    """The point the basis reads, the share the evidence allows (None: no limit), and the
    decision as the proposal states it."""
    basis = terms["basis"]
    if basis == "point_estimate":
        return (
            "point_estimate",
            None,
            {"pays_on": "point_estimate", "reason": "paid on the point estimate"},
        )
    if basis == "conservative_ci_bound":
        return (
            "least_favourable",
            None,
            {
                "pays_on": "least_favourable",
                "reason": "paid on the confidence bound least favourable to the provider",
            },
        )
    if basis == "threshold":
        cap, reason = evidence_share(terms, at["least_favourable"])
        return (
            "point_estimate",
            cap,
            {
                "pays_on": "point_estimate",
                "threshold_relative_reduction": fmt(
                    decimal(terms.get("threshold_relative_reduction", 0))
                ),
                "share_allowed": show(cap),
                "reason": reason,
            },
        )
    raise ValueError(f"unknown payment basis {basis!r}")  # the plan schema admits no other
