"""The outcome metrics on a small example worked out by hand."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from utfall import warehouse
from utfall.metrics import outcome_panel, quarters
from utfall.warehouse.runs import Run

RUN = Run("r1", "demokommun-korttidssjuk-2025")

D = dt.date


@pytest.fixture
def con(tmp_path):
    con = warehouse.connect(tmp_path / "w.duckdb")
    roster = pl.DataFrame(
        {
            "person_id": ["A", "B", "C", "D", "E"],
            "unit_id": ["HEMTJ-01", "HEMTJ-01", "SKOLA-01", "OTHER-01", "HEMTJ-01"],
            "employment_extent": [100, 50, 100, 100, 20],
            "employed_from": [
                D(2020, 1, 1),
                D(2025, 2, 15),
                D(2020, 1, 1),
                D(2020, 1, 1),
                D(2020, 1, 1),
            ],
            "employed_to": [None, None, D(2025, 1, 31), None, None],
        },
        schema_overrides={"employed_to": pl.Date},
    )
    spells = pl.DataFrame(
        {
            "person_id": ["A", "A", "B", "C", "D", "E"],
            "spell_start": [
                D(2024, 12, 25),
                D(2025, 3, 1),
                D(2025, 2, 10),
                D(2025, 1, 30),
                D(2025, 1, 5),
                D(2025, 1, 5),
            ],
            "spell_end": [
                D(2025, 1, 20),
                D(2025, 3, 3),
                D(2025, 2, 20),
                D(2025, 2, 10),
                D(2025, 1, 9),
                D(2025, 1, 9),
            ],
            "extent": [100, 50, 100, 100, 100, 100],
        }
    )
    run = RUN
    for table, frame, source in (
        ("work.staging_employee_roster", roster, "roster"),
        ("work.staging_sick_leave_spells", spells, "sick_leave"),
    ):
        n = frame.height
        frame = frame.with_columns(
            _file=pl.lit("f.csv"), _line=pl.int_range(2, n + 2, dtype=pl.Int64)
        )
        if source == "roster":
            frame = frame.with_columns(birth_year=pl.lit(1970), sex=pl.lit("K"))
        with warehouse.transaction(con):
            warehouse.insert_rows(con, table, frame, {**run.scope, "source": source})
    return con


def _cell(panel, outcome, unit, start):
    rows = panel.filter(
        (pl.col("outcome") == outcome)
        & (pl.col("unit_id") == unit)
        & (pl.col("period_start") == start)
    )
    return rows.row(0, named=True) if rows.height else None


def test_quarters_cover_plan(example_plan):
    q = quarters(example_plan)
    assert q.height == 16
    assert q["phase"].value_counts().sort("phase").rows() == [("baseline", 12), ("measurement", 4)]
    assert q.row(-1) == (D(2025, 10, 1), D(2025, 12, 31), "measurement")


def test_short_term_sick_days_by_hand(con, example_plan):
    panel = outcome_panel(con, example_plan, RUN)
    # HEMTJ-01, Q1 2025 (90 days). Counted: A (100 %, all 90 days) and B (hired 15 Feb:
    # 45 days); E works 20 % < the plan's minimum 25 %, D's unit is not in the cohort.
    # headcount = (90 + 45) / 90 = 1.5.
    # A's spell from 25 Dec: days 1-14 run to 7 Jan, 7 of them in Q1 -> 7.
    # A's spell 1-3 Mar at 50 % -> 1.5.  B's spell from 10 Feb: days 1-14 run to 23 Feb,
    # but B is employed from 15 Feb -> 15-20 Feb = 6.  Total 14.5; per employee 14.5 / 1.5.
    c = _cell(panel, "short_term_sick_days", "HEMTJ-01", D(2025, 1, 1))
    assert c["employees"] == 2
    assert c["denominator"] == pytest.approx(1.5)
    assert c["numerator"] == pytest.approx(14.5)
    assert c["value"] == pytest.approx(14.5 / 1.5)
    # Q4 2024: only A, 25-31 Dec = 7 days, headcount 1.
    c = _cell(panel, "short_term_sick_days", "HEMTJ-01", D(2024, 10, 1))
    assert (c["numerator"], c["denominator"]) == pytest.approx((7.0, 1.0))
    # SKOLA-01, Q1 2025: C employed 1-31 Jan (31 of 90 days); spell from 30 Jan -> 2 days.
    c = _cell(panel, "short_term_sick_days", "SKOLA-01", D(2025, 1, 1))
    assert (c["numerator"], c["denominator"]) == pytest.approx((2.0, 31 / 90))
    # C has left by Q2: no exposure, no row.
    assert _cell(panel, "short_term_sick_days", "SKOLA-01", D(2025, 4, 1)) is None
    assert _cell(panel, "short_term_sick_days", "OTHER-01", D(2025, 1, 1)) is None


def test_sick_leave_rate_by_hand(con, example_plan):
    panel = outcome_panel(con, example_plan, RUN)
    # Scheduled: A 90 days x 100 % + B 45 days x 50 % = 112.5 day-equivalents.
    # Sick: A 1-20 Jan at 100 % = 20; A 1-3 Mar at 50 % = 1.5; B 15-20 Feb (all spell days,
    # not only 1-14) x 100 % spell x 50 % employment = 3.  Total 24.5.
    c = _cell(panel, "sick_leave_rate", "HEMTJ-01", D(2025, 1, 1))
    assert (c["numerator"], c["denominator"]) == pytest.approx((24.5, 112.5))
    assert c["value"] == pytest.approx(24.5 / 112.5)


def test_units_without_spells_have_zero_not_missing(con, example_plan):
    panel = outcome_panel(con, example_plan, RUN)
    c = _cell(panel, "short_term_sick_days", "HEMTJ-01", D(2023, 4, 1))
    assert c["numerator"] == 0 and c["denominator"] == pytest.approx(1.0)
