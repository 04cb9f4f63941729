"""Employment status: label mapping and quarantine rules, entered and sustained work by the
month <-> week rule, exact earnings, and the rate card paying on the events frame."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl
import pytest

from utfall.domains import employment
from utfall.payments.base import Inputs
from utfall.payments.rate_card import pay

D = dt.date


def status_rows(items):
    return pl.DataFrame(
        [{"person_id": p, "month": m, "status": s, "earnings": e} for p, m, s, e in items],
        schema={"person_id": pl.Utf8, "month": pl.Date, "status": pl.Utf8, "earnings": pl.Utf8},
    )


def test_labels_map_to_the_closed_set_and_defects_are_quarantined():
    raw = status_rows(
        [
            ("a", D(2024, 1, 1), " Arbetslös ", None),
            ("a", D(2024, 2, 1), "ANSTÄLLD", "20 000,50"),
            ("a", D(2024, 3, 1), "Studier", ""),
            ("a", D(2024, 4, 1), "pension", None),  # not in LABELS
            ("a", D(2024, 5, 15), "employed", None),  # not a month's first day
            ("a", D(2024, 6, 1), "employed", "-5"),
            ("a", D(2024, 7, 1), "employed", "12.345"),
            ("a", D(2024, 8, 1), "employed", "abc"),
            ("a", D(2024, 9, 1), None, None),
            ("b", D(2024, 1, 1), "employed", "100"),
            ("b", D(2024, 1, 1), "employed", "100"),  # exact copy: the later one
            ("c", D(2024, 1, 1), "employed", None),
            ("c", D(2024, 1, 1), "unemployed", None),  # conflict: both copies
        ]
    )
    valid, bad = employment.validate(raw)
    assert valid.height + bad.height == raw.height
    assert valid.select("person_id", "month", "status").rows() == [
        ("a", D(2024, 1, 1), "unemployed"),
        ("a", D(2024, 2, 1), "employed"),
        ("a", D(2024, 3, 1), "in_education_or_training"),
        ("b", D(2024, 1, 1), "employed"),
    ]
    assert valid["earnings"].to_list() == [None, Decimal("20000.50"), None, Decimal("100.00")]
    assert valid.schema["earnings"] == pl.Decimal(18, 2)
    assert bad["rule"].to_list() == [
        "unknown_status",
        "month_not_first_day",
        "negative_earnings",
        "earnings_more_than_two_decimals",
        "earnings_not_a_number",
        "missing_field",
        "duplicate_row",
        "conflicting_person_month",
        "conflicting_person_month",
    ]
    assert set(valid["status"]) <= set(employment.STATUSES)


def test_float_earnings_are_refused():
    raw = status_rows([]).with_columns(pl.col("earnings").cast(pl.Float64))
    raw = pl.concat(
        [
            raw,
            pl.DataFrame(
                [{"person_id": "a", "month": D(2024, 1, 1), "status": "employed", "earnings": 1.5}],
                schema=raw.schema,
            ),
        ]
    )
    with pytest.raises(TypeError, match="exact"):
        employment.validate(raw)


def history():
    e = "employed"
    rows = [
        ("A", D(2024, 1, 1), e, "1"),  # the enrolment month: before "after enrolment"
        ("A", D(2024, 2, 1), "unemployed", None),
        ("A", D(2024, 3, 1), e, "20000.50"),
        ("A", D(2024, 4, 1), e, "21000"),
        # May: no row, which breaks the run
        *[("A", D(2024, m, 1), e, None if m == 9 else "22000") for m in range(6, 12)],
        *[("B", D(2024, m, 1), e, None) for m in (4, 5, 6)],
        ("B", D(2024, 7, 1), "other", None),
        ("D", D(2024, 12, 1), e, None),
        ("D", D(2025, 1, 1), e, None),  # after the follow-up end
    ]
    valid, bad = employment.validate(status_rows(rows))
    assert bad.height == 0
    enrol = pl.DataFrame(
        {
            "person_id": ["A", "B", "C", "D"],
            "enrolled_on": [D(2024, 1, 15), D(2024, 3, 31), D(2024, 2, 1), D(2024, 1, 10)],
        }
    )
    return employment.outcomes(valid, enrol, follow_up_end=D(2024, 12, 1))


def test_entered_and_sustained_work_by_hand():
    out = {r["person_id"]: r for r in history().to_dicts()}
    a, b, c, d = out["A"], out["B"], out["C"], out["D"]
    assert (a["entered_work_month"], a["entered_work_days"]) == (D(2024, 3, 1), 60)  # 2 months
    # the first run of >= 3 months is June-November (6 months = 182 credited days)
    assert (a["sustained_13_weeks_on"], a["sustained_13_weeks_days"]) == (D(2024, 8, 31), 182)
    assert (a["sustained_26_weeks_on"], a["sustained_26_weeks_days"]) == (D(2024, 11, 30), 182)
    # earnings Feb-Dec 2024 (11 months): 20000.50 + 21000 + 5 x 22000; 4 months unknown
    assert a["earnings_total"] == Decimal("151000.50") and a["earnings_months_missing"] == 4
    assert (b["entered_work"], b["sustained_13_weeks"], b["sustained_26_weeks"]) == (1, 1, 0)
    assert (b["sustained_13_weeks_on"], b["sustained_13_weeks_days"]) == (D(2024, 6, 30), 91)
    assert (c["entered_work"], c["months_observed"], c["earnings_total"]) == (0, 0, 0)
    assert (d["entered_work_month"], d["entered_work_days"], d["sustained_13_weeks"]) == (
        D(2024, 12, 1),
        30,
        0,
    )


def test_credited_days():
    assert [employment.credited_days(k) for k in (1, 2, 3, 6, 12)] == [30, 60, 91, 182, 364]


def test_rate_card_pays_the_events():
    ev = employment.events(history())
    assert ev.columns == ["person_id", "event", "achieved_on", "duration_days"]
    assert ev.height == 6  # A: 3 events, B: 2, D: 1
    rule = {
        "prices": [
            {"event": "entered_work", "price": "1000"},
            {"event": "sustained_13_weeks", "price": "3000", "min_duration_days": 91},
            {"event": "sustained_26_weeks", "price": "5000", "min_duration_days": 182},
        ],
        "cap_per_person": "8000",
        "contract_cap": "100000",
    }
    due = pay(rule, Inputs(events=ev))
    # A: 1000 + 3000 + 5000 cut to the 8000 cap; B: 1000 + 3000; D: 1000
    assert due.amount == Decimal("13000")
    statuses = {(c["person_id"], c["event"]): c["status"] for c in due.detail["claims"]}
    assert statuses[("A", "sustained_26_weeks")] == "capped_person"


def test_earnings_over_an_explicit_window():
    e = "employed"
    valid, _ = employment.validate(
        status_rows(
            [
                ("A", D(2024, 2, 1), e, "100.10"),
                ("A", D(2024, 3, 1), e, "200.20"),
                ("A", D(2024, 4, 1), e, None),
                ("A", D(2024, 5, 1), e, "400"),
            ]
        )
    )
    enrol = pl.DataFrame({"person_id": ["A"], "enrolled_on": [D(2024, 1, 15)]})
    out = employment.outcomes(
        valid, enrol, D(2024, 12, 1), earnings_window=(D(2024, 3, 1), D(2024, 6, 1))
    ).row(0, named=True)
    # March-June: 200.20 + 400; April (null) and June (no row) unknown
    assert (out["earnings_total"], out["earnings_months_missing"]) == (Decimal("600.20"), 2)


def test_earnings_column_is_optional():
    raw = pl.DataFrame(
        {
            "person_id": ["a", "a"],
            "month": [D(2024, 1, 1), D(2024, 2, 1)],
            "status": ["Arbete", "x"],
        }
    )
    valid, bad = employment.validate(raw)
    assert valid.rows() == [("a", D(2024, 1, 1), "employed", None)]
    assert bad["rule"].to_list() == ["unknown_status"]
