"""Public costs: exact amounts, quarantine rules, per-person totals over a window, savings."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl
import pytest

from utfall.domains import public_costs
from utfall.payments.base import Inputs
from utfall.payments.share_of_savings import pay

D = dt.date


def frame(items):
    return pl.DataFrame(
        [dict(zip(public_costs.COLUMNS, i, strict=True)) for i in items],
        schema={"person_id": pl.Utf8, "month": pl.Date, "cost_type": pl.Utf8, "amount": pl.Utf8},
    )


def test_validate_and_totals():
    raw = frame(
        [
            ("a", D(2024, 1, 1), "benefit", "9 500,10"),
            ("a", D(2024, 2, 1), "Benefit", "9500.20"),
            ("a", D(2024, 3, 1), "placement", "30000"),  # outside the window below
            ("a", D(2024, 2, 1), "benefit", "-100.05"),  # a correction, kept
            ("b", D(2023, 12, 1), "care", "0.10"),  # before the window
            ("b", D(2024, 1, 1), "lottery", "5"),
            ("b", D(2024, 1, 2), "benefit", "5"),
            ("b", D(2024, 1, 1), "benefit", "5.001"),
            ("b", D(2024, 1, 1), "benefit", "fem"),
            ("b", D(2024, 1, 1), "benefit", None),
        ]
    )
    valid, bad = public_costs.validate(raw)
    assert valid.height + bad.height == raw.height
    assert bad["rule"].to_list() == [
        "unknown_cost_type",
        "month_not_first_day",
        "amount_more_than_two_decimals",
        "amount_not_a_number",
        "missing_field",
    ]
    tot = public_costs.totals(valid, ["a", "b", "c"], D(2024, 1, 15), D(2024, 2, 10))
    # a: 9500.10 + 9500.20 - 100.05 = 18900.25; b: nothing in Jan-Feb; c: no rows
    assert tot.rows() == [("a", Decimal("18900.25")), ("b", Decimal("0")), ("c", Decimal("0"))]
    assert tot.schema["cost_total"] == pl.Decimal(18, 2)


def test_float_amounts_are_refused():
    raw = pl.DataFrame(
        {"person_id": ["a"], "month": [D(2024, 1, 1)], "cost_type": ["benefit"], "amount": [1.1]}
    )
    with pytest.raises(TypeError, match="exact"):
        public_costs.validate(raw)


def test_savings_is_exact_and_matches_share_of_savings():
    # 0.1 + 0.2 style float noise does not leak: -1234.56789 -> -1234.5679 per person
    assert public_costs.savings(-1234.56789, 300) == Decimal("370370.37")
    assert public_costs.savings(Decimal("-1500.25"), 4) == Decimal("6001.00")
    assert public_costs.savings("250", 10) == Decimal("-2500")  # costs rose
    with pytest.raises(ValueError):
        public_costs.savings(Decimal(1), -1)
    # share_of_savings reads the saving per person in the desired direction (+1500.25)
    due = pay(
        {"share": 0.5, "cap": "1000000"},
        Inputs(absolute=Decimal("1500.25"), counts={"persons_treated": 4}),
    )
    assert due.amount == public_costs.savings(Decimal("-1500.25"), 4) / 2
