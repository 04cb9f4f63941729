"""Payments: exact decimals, clamped to 0..target, on the basis the plan names."""

from __future__ import annotations

import copy
from dataclasses import replace
from decimal import Decimal

import pytest

from utfall.payments import measured_improvement, propose


def _effect(rel: float, low: float = -0.2, high: float = -0.05) -> dict:
    return {
        "outcome": "short_term_sick_days",
        "relative_estimate": rel,
        "relative_ci_low": low,
        "relative_ci_high": high,
    }


@pytest.mark.parametrize(
    ("rel", "variable", "total"),
    [
        (-0.06, "700000.00", "1300000.00"),  # half the 12 % target -> half the outcome part
        (-0.12, "1400000.00", "2000000.00"),  # at target
        (-0.30, "1400000.00", "2000000.00"),  # above target: capped
        (0.05, "0.00", "600000.00"),  # got worse: floored at zero
        (-0.1, "1166666.67", "1766666.67"),  # 0.1/0.12 x 1 400 000, rounded to öre once
    ],
)
def test_linear_to_target(point_plan, rel, variable, total):
    p = propose(point_plan, _effect(rel))
    assert p["lines"][0]["amount"] == "600000.00"
    assert p["lines"][1]["amount"] == variable
    assert p["total"] == total and p["maximum"] == "2000000.00"
    assert p["currency"] == "SEK" and p["status"] == "proposed"


def test_improvement_is_an_exact_rounded_decimal(point_plan):
    assert measured_improvement(point_plan, _effect(-0.123456789)) == Decimal("0.1235")


def test_conservative_basis_uses_the_bound_least_favourable_to_provider(example_plan):
    plan = _with_terms(
        example_plan, basis="conservative_ci_bound", threshold_relative_reduction=None
    )
    assert measured_improvement(plan, _effect(-0.12, low=-0.2, high=-0.03)) == Decimal("0.0300")
    assert propose(plan, _effect(-0.12, high=-0.03))["lines"][1]["amount"] == "350000.00"


def _with_terms(plan, **terms):
    data = copy.deepcopy(plan.data)
    data["payment"] = {**data["payment"], **terms}
    for key, value in terms.items():
        if value is None:
            del data["payment"][key]
    return replace(plan, data=data)


@pytest.fixture
def point_plan(example_plan):
    return _with_terms(
        example_plan, basis="point_estimate", threshold_relative_reduction=None, tiers=None
    )


def test_example_plan_pays_on_the_threshold_basis(example_plan):
    assert example_plan.payment["basis"] == "threshold"
    # Significant (the least favourable bound shows a 5 % reduction): the point estimate pays.
    p = propose(example_plan, _effect(-0.1, low=-0.18, high=-0.05))
    assert p["lines"][1]["amount"] == "1166666.67" and p["total"] == "1766666.67"
    assert p["decision"]["share_allowed"] == "1.000000"
    # Not significant: the interval reaches +1 %, so the outcome part pays nothing.
    p = propose(example_plan, _effect(-0.1, low=-0.21, high=0.01))
    assert p["lines"][1]["amount"] == "0.00" and p["total"] == "600000.00"
    assert "not better than the threshold" in p["decision"]["reason"]


@pytest.mark.parametrize(
    ("high", "variable"),
    [
        (-0.0001, "1166666.67"),  # the bound 0.0001 is better than 0: pays
        (0.0, "0.00"),  # exactly at the threshold is not better than it
        (-0.00004, "0.00"),  # rounds to 0.0000 before the comparison: exact and reproducible
    ],
)
def test_threshold_is_strict_on_the_rounded_bound(example_plan, high, variable):
    assert propose(example_plan, _effect(-0.1, high=high))["lines"][1]["amount"] == variable


def test_threshold_above_zero(example_plan):
    plan = _with_terms(example_plan, threshold_relative_reduction=0.03)
    assert propose(plan, _effect(-0.1, high=-0.03))["variable"] == "0.00"
    assert propose(plan, _effect(-0.1, high=-0.0301))["variable"] == "1166666.67"


TIERS = [
    {"min_relative_reduction": 0.0, "share": 0.25},
    {"min_relative_reduction": 0.03, "share": 0.5},
    {"min_relative_reduction": 0.06, "share": 1},
]


@pytest.mark.parametrize(
    ("rel", "high", "variable", "share"),
    [
        (-0.12, 0.01, "0.00", "0.000000"),  # threshold not cleared
        (-0.12, -0.01, "350000.00", "0.250000"),  # first step
        (-0.12, -0.03, "350000.00", "0.250000"),  # 0.03 does not clear the 0.03 step
        (-0.12, -0.05, "700000.00", "0.500000"),
        (-0.12, -0.07, "1400000.00", "1.000000"),
        (-0.02, -0.01, "233333.33", "0.250000"),  # the point estimate earns less than the step
        (-0.09, -0.07, "1050000.00", "1.000000"),  # top step: the point estimate decides
    ],
)
def test_tiers_cap_the_share_by_the_least_favourable_bound(
    example_plan, rel, high, variable, share
):
    plan = _with_terms(example_plan, tiers=TIERS)
    p = propose(plan, _effect(rel, low=-0.3, high=high))
    assert p["lines"][1]["amount"] == variable and p["variable"] == variable
    assert p["decision"]["share_allowed"] == share
    assert p["lines"][0]["amount"] == "600000.00"


def test_payment_range_reads_both_ends_of_the_interval(example_plan):
    p = propose(example_plan, {**_effect(-0.1, low=-0.18, high=0.02), "confidence": 0.95})
    assert p["confidence"] == 0.95
    assert p["range"] == [
        {
            "at": "least_favourable",
            "improvement": "-0.0200",
            "variable": "0.00",
            "total": "600000.00",
        },
        {
            "at": "point_estimate",
            "improvement": "0.1000",
            "variable": "1166666.67",
            "total": "1766666.67",
        },
        {
            "at": "most_favourable",
            "improvement": "0.1800",
            "variable": "1400000.00",
            "total": "2000000.00",
        },
    ]
    assert p["total"] == "600000.00" and p["basis"] == "threshold"


def test_desired_increase_reads_the_low_bound_as_least_favourable(example_plan):
    data = copy.deepcopy(example_plan.data)
    data["outcomes"][0]["desired_direction"] = "increase"
    data["payment"]["basis"] = "conservative_ci_bound"
    del data["payment"]["threshold_relative_reduction"]
    plan = replace(example_plan, data=data)
    p = propose(plan, _effect(0.1, low=0.03, high=0.17))
    assert p["measured_improvement"] == "0.0300" and p["variable"] == "350000.00"
    assert [r["improvement"] for r in p["range"]] == ["0.0300", "0.1000", "0.1700"]


def test_terms_override_compares_bases_on_one_effect(example_plan, point_plan):
    effect = _effect(-0.1, low=-0.21, high=0.01)
    assert propose(example_plan, effect)["total"] == "600000.00"
    assert propose(example_plan, effect, terms=point_plan.payment)["total"] == "1766666.67"
    assert propose(point_plan, effect)["total"] == "1766666.67"


GOLDEN_TIERS = [
    {"min_relative_reduction": 0.0, "share": 0.25},
    {"min_relative_reduction": 0.03, "share": 0.5},
    {"min_relative_reduction": 0.06, "share": 1},
]


def test_proposals_are_byte_identical_to_the_single_module_version(example_plan):
    """735 proposals (the example plan and four variants of its basis, over a grid of point
    estimates and bounds, boundaries included) hash to what `utfall/payments.py` gave before
    it became a package of rules (sha256 of report.dumps of each, in order)."""
    import hashlib
    import itertools

    from utfall.report import dumps

    plans = [
        example_plan,
        _with_terms(example_plan, tiers=GOLDEN_TIERS),
        _with_terms(example_plan, threshold_relative_reduction=0.03),
        _with_terms(example_plan, basis="point_estimate", threshold_relative_reduction=None),
        _with_terms(example_plan, basis="conservative_ci_bound", threshold_relative_reduction=None),
    ]
    grid = itertools.product(
        [-0.3, -0.12, -0.1, -0.06, -0.0, 0.05, -0.123456789],
        [-0.4, -0.18, -0.05],
        [-0.07, -0.03, -0.0001, 0.0, -0.00004, 0.01, 0.02],
    )
    effects = [{**_effect(r, lo, hi), "confidence": 0.95} for r, lo, hi in grid]
    digest = hashlib.sha256()
    for plan in plans:
        for e in effects:
            digest.update(dumps(propose(plan, e)).encode())
    assert digest.hexdigest() == "25368778427cff8fc5d6726b1d4dd60c49d12e7dba5102b75051ad7745e17811"


def test_example_proposal_in_full(example_plan):
    p = propose(example_plan, {**_effect(-0.1, low=-0.18, high=-0.05), "confidence": 0.95})
    assert p["lines"] == [
        {
            "rule": 0,
            "kind": "fixed",
            "description": "Fixed part of the provider's fee",
            "max_amount": "600000.00",
            "achievement": "1.000000",
            "amount": "600000.00",
            "explanation": "fixed amount",
        },
        {
            "rule": 1,
            "kind": "linear_to_target",
            "description": (
                "Outcome part, paid in proportion to the reduction achieved, in full at 12 %"
            ),
            "max_amount": "1400000.00",
            "achievement": "0.833333",
            "amount": "1166666.67",
            "explanation": "improvement 0.1000 / target 0.12, clamped to 0..1 = 0.833333",
        },
    ]
    assert set(p) == {
        "currency", "outcome", "basis", "decision", "confidence", "measured_improvement",
        "lines", "total", "variable", "maximum", "variable_maximum", "range", "status",
    }  # fmt: skip


def test_a_callers_decimal_context_does_not_change_a_payment(example_plan):
    import decimal

    with decimal.localcontext(decimal.Context(prec=3, rounding=decimal.ROUND_DOWN)):
        p = propose(example_plan, _effect(-0.1, low=-0.18, high=-0.05))
    assert p["lines"][1]["amount"] == "1166666.67" and p["total"] == "1766666.67"
