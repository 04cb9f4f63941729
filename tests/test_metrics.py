"""The outcome metrics on a small example worked out by hand."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
import yaml

from tests.conftest import new_warehouse
from utfall import warehouse
from utfall.cli import EXAMPLE_PLAN
from utfall.metrics import outcome_panel, quarters, workday_calendar
from utfall.plan import Plan, load_plan
from utfall.warehouse.runs import Run

RUN = Run("r1", "demokommun-korttidssjuk-2025")

D = dt.date


def _store(con, roster: pl.DataFrame, spells: pl.DataFrame, run: Run = RUN) -> None:
    """Write roster rows and spells as the run's validated (staging) rows."""
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


def _roster(rows: list[tuple]) -> pl.DataFrame:
    """Rows (person, unit, extent, from, to)."""
    return pl.DataFrame(
        rows,
        schema={
            "person_id": pl.String,
            "unit_id": pl.String,
            "employment_extent": pl.Int64,
            "employed_from": pl.Date,
            "employed_to": pl.Date,
        },
        orient="row",
    )


def _spells(rows: list[tuple]) -> pl.DataFrame:
    """Rows (person, start, end, extent)."""
    return pl.DataFrame(
        rows,
        schema={
            "person_id": pl.String,
            "spell_start": pl.Date,
            "spell_end": pl.Date,
            "extent": pl.Int64,
        },
        orient="row",
    )


@pytest.fixture
def con(tmp_path):
    con = new_warehouse(tmp_path / "w.duckdb")
    roster = _roster(
        [
            ("A", "HEMTJ-01", 100, D(2020, 1, 1), None),
            ("B", "HEMTJ-01", 50, D(2025, 2, 15), None),
            ("C", "SKOLA-01", 100, D(2020, 1, 1), D(2025, 1, 31)),
            ("D", "OTHER-01", 100, D(2020, 1, 1), None),
            ("E", "HEMTJ-01", 20, D(2020, 1, 1), None),
        ]
    )
    spells = _spells(
        [
            ("A", D(2024, 12, 25), D(2025, 1, 20), 100),
            ("A", D(2025, 3, 1), D(2025, 3, 3), 50),
            ("B", D(2025, 2, 10), D(2025, 2, 20), 100),
            ("C", D(2025, 1, 30), D(2025, 2, 10), 100),
            ("D", D(2025, 1, 5), D(2025, 1, 9), 100),
            ("E", D(2025, 1, 5), D(2025, 1, 9), 100),
        ]
    )
    _store(con, roster, spells)
    yield con
    con.close()


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


def test_sick_leave_rate_by_hand(con, tmp_path):
    panel = outcome_panel(con, _plan(tmp_path), RUN)
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


# --- Sick periods (sjuklönelagen): spells joined, days 1-14 counted per period --------------

#: One employee, 100 % in a treated unit throughout.
ONE = [("P", "HEMTJ-01", 100, D(2020, 1, 1), None)]


def _plan(tmp_path, **params) -> Plan:
    """The example plan with the short-term outcome's parameters set to `params`."""
    data = yaml.safe_load(EXAMPLE_PLAN.read_text(encoding="utf-8"))
    data["outcomes"][0]["parameters"] = {"max_spell_day": 14, **params}
    # These tests count calendar days; the working-day rate has tests of its own.
    data["outcomes"][1]["parameters"] = {"day_basis": "calendar_days"}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return load_plan(path)


def _short_days(tmp_path, roster, spells, **params) -> dict[tuple[str, dt.date], float]:
    """Short-term sick days (the numerator) per (unit, quarter start), zero cells left out."""
    con = new_warehouse(tmp_path / f"w{len(list(tmp_path.glob('w*.duckdb')))}.duckdb")
    try:
        _store(con, _roster(roster), _spells(spells))
        panel = outcome_panel(con, _plan(tmp_path, **params), RUN)
    finally:
        con.close()
    rows = panel.filter((pl.col("outcome") == "short_term_sick_days") & (pl.col("numerator") > 0))
    return {(u, q): n for u, q, n in rows.select("unit_id", "period_start", "numerator").rows()}


Q1 = D(2025, 1, 1)
Q2 = D(2025, 4, 1)


def test_change_of_extent_continues_the_sick_period(tmp_path):
    # 1-5 Feb at 100 %, then 6-20 Feb at 50 % (the extent changed: a new row, the same
    # period). Period days 1-5 are 1-5 Feb (5 x 1.0); days 6-14 are 6-14 Feb (9 x 0.5).
    spells = [("P", D(2025, 2, 1), D(2025, 2, 5), 100), ("P", D(2025, 2, 6), D(2025, 2, 20), 50)]
    assert _short_days(tmp_path, ONE, spells) == {("HEMTJ-01", Q1): 5 + 4.5}
    # Re-illness days 0 still joins a change of extent (no sick-free day between).
    assert _short_days(tmp_path, ONE, spells, reillness_days=0) == {("HEMTJ-01", Q1): 9.5}
    # Per spell (the old count): 5 + the second spell's own days 1-14 (14 x 0.5).
    assert _short_days(tmp_path, ONE, spells, period_rule="per_spell") == {
        ("HEMTJ-01", Q1): 5 + 7.0
    }


def test_reillness_within_the_window_continues_the_period(tmp_path):
    # Sick 1-10 Feb (period days 1-10), well 11-13 Feb (3 days, not period days), sick
    # again 14-21 Feb (8 days: period days 11-18): only 14-17 Feb (days 11-14) count.
    spells = [("P", D(2025, 2, 1), D(2025, 2, 10), 100), ("P", D(2025, 2, 14), D(2025, 2, 21), 100)]
    assert _short_days(tmp_path, ONE, spells) == {("HEMTJ-01", Q1): 10 + 4.0}
    assert _short_days(tmp_path, ONE, spells, period_rule="per_spell") == {
        ("HEMTJ-01", Q1): 10 + 8.0
    }
    # A shorter window (2 sick-free days) makes the second spell a new period.
    assert _short_days(tmp_path, ONE, spells, reillness_days=2) == {("HEMTJ-01", Q1): 18.0}
    assert _short_days(tmp_path, ONE, spells, reillness_days=3) == {("HEMTJ-01", Q1): 14.0}


def test_reillness_window_edges(tmp_path):
    first = ("P", D(2025, 2, 1), D(2025, 2, 10), 100)
    # Well 11-15 Feb (5 days), sick from 16 Feb: continues; days 11-14 = 16-19 Feb.
    inside = [first, ("P", D(2025, 2, 16), D(2025, 2, 28), 100)]
    assert _short_days(tmp_path, ONE, inside) == {("HEMTJ-01", Q1): 14.0}
    # Well 11-16 Feb (6 days), sick from 17 Feb: a new period with its own days 1-13.
    outside = [first, ("P", D(2025, 2, 17), D(2025, 3, 1), 100)]
    assert _short_days(tmp_path, ONE, outside) == {("HEMTJ-01", Q1): 10 + 13.0}


def test_a_period_joins_several_spells_and_ends_after_day_14(tmp_path):
    # Three spells within the window of each other: 3 + 4 days, then 20 days of which
    # days 8-14 (7 days) count. A fourth spell 3 days later is still the same period
    # (the window runs from the previous spell's end), but past day 14: nothing counts.
    spells = [
        ("P", D(2025, 5, 1), D(2025, 5, 3), 100),
        ("P", D(2025, 5, 6), D(2025, 5, 9), 50),
        ("P", D(2025, 5, 12), D(2025, 5, 31), 100),
        ("P", D(2025, 6, 4), D(2025, 6, 6), 100),
    ]
    assert _short_days(tmp_path, ONE, spells) == {("HEMTJ-01", Q2): 3 + 4 * 0.5 + 7}


def test_a_period_crossing_a_quarter_splits_its_days(tmp_path):
    # Sick 20-27 Mar (period days 1-8, all Q1), well 28-30 Mar, sick 31 Mar - 20 Apr at 50 %:
    # period days 9-14 are 31 Mar (Q1) and 1-5 Apr (Q2).
    spells = [("P", D(2025, 3, 20), D(2025, 3, 27), 100), ("P", D(2025, 3, 31), D(2025, 4, 20), 50)]
    assert _short_days(tmp_path, ONE, spells) == {
        ("HEMTJ-01", Q1): 8 + 0.5,
        ("HEMTJ-01", Q2): 5 * 0.5,
    }


def test_a_period_begun_before_the_baseline_counts_its_early_days(tmp_path):
    # The baseline starts 1 Jan 2022. Sick 20-28 Dec 2021 (period days 1-9, outside the
    # panel), well 29-30 Dec, sick 31 Dec 2021 - 20 Jan 2022: day 10 is 31 Dec, days 11-14
    # are 1-4 Jan: 4 days in Q1 2022. Per spell, 1-13 Jan (days 2-14 of the spell) count.
    spells = [
        ("P", D(2021, 12, 20), D(2021, 12, 28), 100),
        ("P", D(2021, 12, 31), D(2022, 1, 20), 100),
    ]
    assert _short_days(tmp_path, ONE, spells) == {("HEMTJ-01", D(2022, 1, 1)): 4.0}
    assert _short_days(tmp_path, ONE, spells, period_rule="per_spell") == {
        ("HEMTJ-01", D(2022, 1, 1)): 13.0
    }


def test_periods_are_per_person(tmp_path):
    # Q's spell starts the day after P's ends: two people, two periods.
    roster = ONE + [("Q", "HEMTJ-01", 100, D(2020, 1, 1), None)]
    spells = [("P", D(2025, 2, 1), D(2025, 2, 10), 100), ("Q", D(2025, 2, 11), D(2025, 2, 28), 100)]
    assert _short_days(tmp_path, roster, spells) == {("HEMTJ-01", Q1): 10 + 14.0}


# --- Employment history: exposure and sick days follow the employment row of each day -------


def _panel(tmp_path, roster, spells) -> pl.DataFrame:
    con = new_warehouse(tmp_path / "h.duckdb")
    try:
        _store(con, _roster(roster), _spells(spells))
        return outcome_panel(con, _plan(tmp_path), RUN)
    finally:
        con.close()


def test_a_transfer_splits_exposure_and_sick_days(tmp_path):
    # P moves from HEMTJ-01 to SKOLA-01 on 15 Feb 2025: Q1 (90 days) is 45 days in each.
    # A spell 10-20 Feb (period days 1-11): 10-14 Feb in HEMTJ-01, 15-20 Feb in SKOLA-01.
    roster = [
        ("P", "HEMTJ-01", 100, D(2020, 1, 1), D(2025, 2, 14)),
        ("P", "SKOLA-01", 100, D(2025, 2, 15), None),
    ]
    panel = _panel(tmp_path, roster, [("P", D(2025, 2, 10), D(2025, 2, 20), 100)])
    h = _cell(panel, "short_term_sick_days", "HEMTJ-01", Q1)
    s = _cell(panel, "short_term_sick_days", "SKOLA-01", Q1)
    assert (h["employees"], h["numerator"], h["denominator"]) == (1, 5.0, pytest.approx(0.5))
    assert (s["employees"], s["numerator"], s["denominator"]) == (1, 6.0, pytest.approx(0.5))
    # The rate: 100 % employed, so sick scheduled days = sick days; 45 scheduled days each.
    h = _cell(panel, "sick_leave_rate", "HEMTJ-01", Q1)
    s = _cell(panel, "sick_leave_rate", "SKOLA-01", Q1)
    assert (h["numerator"], h["denominator"]) == (5.0, 45.0)
    assert (s["numerator"], s["denominator"]) == (6.0, 45.0)
    # Before the transfer only HEMTJ-01, after it only SKOLA-01.
    assert _cell(panel, "short_term_sick_days", "SKOLA-01", D(2024, 10, 1)) is None
    assert _cell(panel, "short_term_sick_days", "HEMTJ-01", Q2) is None
    assert _cell(panel, "short_term_sick_days", "SKOLA-01", Q2)["denominator"] == 1.0


def test_a_sick_period_runs_on_across_a_transfer(tmp_path):
    # Sick 10-14 Feb in HEMTJ-01 (period days 1-5), transferred 15 Feb, well 15-16 Feb, sick
    # 17-28 Feb in SKOLA-01: the same period, days 6-17, so 17-25 Feb (days 6-14) count there.
    roster = [
        ("P", "HEMTJ-01", 100, D(2020, 1, 1), D(2025, 2, 14)),
        ("P", "SKOLA-01", 100, D(2025, 2, 15), None),
    ]
    spells = [
        ("P", D(2025, 2, 10), D(2025, 2, 14), 100),
        ("P", D(2025, 2, 17), D(2025, 2, 28), 100),
    ]
    assert _short_days(tmp_path, roster, spells) == {("HEMTJ-01", Q1): 5.0, ("SKOLA-01", Q1): 9.0}


def test_a_change_of_extent_changes_fte_days(tmp_path):
    # P works 100 % to 31 Jan 2025, then 50 %: Q1 headcount is 1 person for all 90 days,
    # scheduled days 31 x 1.0 + 59 x 0.5 = 60.5. A spell 30 Jan - 2 Feb: 4 short-term
    # days; sick scheduled days 2 x 1.0 (30-31 Jan) + 2 x 0.5 (1-2 Feb) = 3.
    roster = [
        ("P", "HEMTJ-02", 100, D(2020, 1, 1), D(2025, 1, 31)),
        ("P", "HEMTJ-02", 50, D(2025, 2, 1), None),
    ]
    panel = _panel(tmp_path, roster, [("P", D(2025, 1, 30), D(2025, 2, 2), 100)])
    c = _cell(panel, "short_term_sick_days", "HEMTJ-02", Q1)
    assert (c["employees"], c["numerator"], c["denominator"]) == (1, 4.0, 1.0)
    c = _cell(panel, "sick_leave_rate", "HEMTJ-02", Q1)
    assert (c["numerator"], c["denominator"]) == (3.0, 60.5)
    assert _cell(panel, "sick_leave_rate", "HEMTJ-02", Q2)["denominator"] == 91 * 0.5


def test_reemployment_after_a_gap(tmp_path):
    # P leaves FSK-01 on 31 Jan 2025 and returns at 75 % on 1 Mar: Q1 exposure is 31 + 31
    # days (headcount 62/90), scheduled 31 + 31 x 0.75 = 54.25. Sick 10-12 Feb, between
    # the jobs: counted nowhere. Sick 26 Feb - 5 Mar (a new period: 13 days after 12 Feb):
    # days 1-8, of which 1-5 Mar fall in employment.
    roster = [
        ("P", "FSK-01", 100, D(2020, 1, 1), D(2025, 1, 31)),
        ("P", "FSK-01", 75, D(2025, 3, 1), None),
    ]
    spells = [("P", D(2025, 2, 10), D(2025, 2, 12), 100), ("P", D(2025, 2, 26), D(2025, 3, 5), 100)]
    panel = _panel(tmp_path, roster, spells)
    c = _cell(panel, "short_term_sick_days", "FSK-01", Q1)
    assert (c["employees"], c["numerator"]) == (1, 5.0)
    assert c["denominator"] == pytest.approx(62 / 90)
    c = _cell(panel, "sick_leave_rate", "FSK-01", Q1)
    assert (c["numerator"], c["denominator"]) == (5 * 0.75, 54.25)


def test_employees_are_distinct_persons(tmp_path):
    # Two rows of P in one unit and quarter (a change of extent) and one of Q: 2 employees.
    roster = [
        ("P", "FSK-02", 100, D(2020, 1, 1), D(2025, 1, 31)),
        ("P", "FSK-02", 80, D(2025, 2, 1), None),
        ("Q", "FSK-02", 100, D(2020, 1, 1), None),
    ]
    c = _cell(_panel(tmp_path, roster, []), "short_term_sick_days", "FSK-02", Q1)
    assert (c["employees"], c["denominator"]) == (2, 2.0)


def test_days_in_an_ineligible_row_count_nowhere(tmp_path):
    # P drops to 20 % (below the plan's minimum 25 %) from 1 Feb: from then P's days are
    # not exposure and P's sick days are counted nowhere; a transfer to a unit outside the
    # cohort (OTHER-01) likewise.
    roster = [
        ("P", "HEMTJ-03", 100, D(2020, 1, 1), D(2025, 1, 31)),
        ("P", "HEMTJ-03", 20, D(2025, 2, 1), D(2025, 2, 28)),
        ("P", "OTHER-01", 100, D(2025, 3, 1), None),
    ]
    spells = [("P", D(2025, 1, 28), D(2025, 2, 3), 100), ("P", D(2025, 3, 10), D(2025, 3, 12), 100)]
    panel = _panel(tmp_path, roster, spells)
    c = _cell(panel, "short_term_sick_days", "HEMTJ-03", Q1)
    assert (c["employees"], c["numerator"]) == (1, 4.0)  # 28-31 Jan
    assert c["denominator"] == pytest.approx(31 / 90)
    assert panel.filter(pl.col("unit_id") == "OTHER-01").height == 0


# --- The SQL against a day-by-day reference on random histories -----------------------------


def _random_history(seed: int, persons: int = 300) -> tuple[list[tuple], list[tuple]]:
    """Random non-overlapping employment rows and spells (gaps of 0-12 days are common, so
    many spells join; some persons change unit or extent, leave and come back)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    units = ["HEMTJ-01", "HEMTJ-02", "SKOLA-01", "OTHER-01"]
    roster, spells = [], []
    for i in range(persons):
        p = f"P{i}"
        day = D(2021, 6, 1) + dt.timedelta(days=int(rng.integers(0, 400)))
        while day < D(2026, 3, 1):
            length = int(rng.integers(20, 500))
            end = day + dt.timedelta(days=length - 1)
            last = rng.random() < 0.3
            extent = int(rng.choice([20, 50, 75, 100]))
            roster.append((p, str(rng.choice(units)), extent, day, None if last else end))
            if last:
                break
            day = end + dt.timedelta(days=int(rng.choice([1, 1, 1, 10, 40])))
        day = D(2021, 10, 1) + dt.timedelta(days=int(rng.integers(0, 60)))
        while day < D(2026, 1, 31):
            length = int(rng.choice([1, 2, 3, 5, 8, 13, 20, 40]))
            end = day + dt.timedelta(days=length - 1)
            spells.append((p, day, end, int(rng.choice([25, 50, 75, 100]))))
            day = end + dt.timedelta(days=int(rng.choice([1, 2, 4, 6, 7, 30, 120])))
    return roster, spells


def _reference(plan: Plan, roster: list[tuple], spells: list[tuple], **params) -> dict:
    """Short-term days per (unit, quarter) counted one day at a time, in plain Python."""
    max_day, rule, gap = params["max_spell_day"], params["period_rule"], params["reillness_days"]
    units = set(plan.treated_units) | set(plan.comparison_units)
    quarter = {r["period_start"]: r["period_end"] for r in quarters(plan).to_dicts()}
    out: dict = {}
    by_person: dict = {}
    for s in sorted(spells, key=lambda s: (s[0], s[1])):
        by_person.setdefault(s[0], []).append(s)
    jobs: dict = {}
    for p, unit, emp, f, t in roster:
        if unit in units and emp >= plan.min_employment_extent:
            jobs.setdefault(p, []).append((unit, f, t or D(9999, 12, 31)))
    for person, rows in by_person.items():
        number, last = 0, None
        for _, start, end, extent in rows:
            if rule == "per_spell" or last is None or (start - last).days - 1 > gap:
                number = 0
            day = start
            while day <= end:
                number += 1
                if number <= max_day:
                    for unit, f, t in jobs.get(person, []):
                        if f <= day <= t:
                            for q0, q1 in quarter.items():
                                if q0 <= day <= q1:
                                    out[(unit, q0)] = out.get((unit, q0), 0) + extent
                day += dt.timedelta(days=1)
            last = end
    return {k: v / 100 for k, v in out.items() if v}


@pytest.mark.parametrize(
    "params",
    [
        {"period_rule": "statutory", "reillness_days": 5},
        {"period_rule": "statutory", "reillness_days": 0},
        {"period_rule": "per_spell", "reillness_days": 5},
        {"period_rule": "statutory", "reillness_days": 30, "max_spell_day": 30},
    ],
)
def test_panel_matches_a_day_by_day_count(tmp_path, params):
    roster, spells = _random_history(7)
    plan = _plan(tmp_path, **params)
    full = plan.outcome_parameters("short_term_sick_days")
    expected = _reference(plan, roster, spells, **full)
    assert len(expected) > 20
    assert _short_days(tmp_path, roster, spells, **params) == pytest.approx(expected)
    if params["period_rule"] == "statutory":  # the example joins spells: the rules differ
        per_spell = _reference(plan, roster, spells, **{**full, "period_rule": "per_spell"})
        assert sum(per_spell.values()) > sum(expected.values())


def test_exposure_and_rate_match_a_day_by_day_count(tmp_path):
    roster, spells = _random_history(11, persons=150)
    plan = _plan(tmp_path)
    units = set(plan.treated_units) | set(plan.comparison_units)
    quarter = {r["period_start"]: r["period_end"] for r in quarters(plan).to_dicts()}
    persons: dict = {}
    employed: dict = {}
    scheduled: dict = {}
    sick: dict = {}
    sick_days = {}
    for p, start, end, extent in spells:
        for k in range((end - start).days + 1):
            sick_days[(p, start + dt.timedelta(days=k))] = extent
    for p, unit, emp, f, t in roster:
        if unit not in units or emp < plan.min_employment_extent:
            continue
        for q0, q1 in quarter.items():
            day = max(f, q0)
            while day <= min(t or q1, q1):
                key = (unit, q0)
                persons.setdefault(key, set()).add(p)
                employed[key] = employed.get(key, 0) + 1
                scheduled[key] = scheduled.get(key, 0) + emp
                sick[key] = sick.get(key, 0) + sick_days.get((p, day), 0) * emp
                day += dt.timedelta(days=1)
    con = new_warehouse(tmp_path / "x.duckdb")
    _store(con, _roster(roster), _spells(spells))
    panel = outcome_panel(con, plan, RUN)
    con.close()
    rate = panel.filter(pl.col("outcome") == "sick_leave_rate")
    short = panel.filter(pl.col("outcome") == "short_term_sick_days")
    assert rate.height == len(persons) > 20
    for r in rate.iter_rows(named=True):
        key = (r["unit_id"], r["period_start"])
        assert r["employees"] == len(persons[key])
        assert r["denominator"] == scheduled[key] / 100
        assert r["numerator"] == pytest.approx(sick[key] / 10000)
    for r in short.iter_rows(named=True):
        key = (r["unit_id"], r["period_start"])
        days = (r["period_end"] - r["period_start"]).days + 1
        assert r["denominator"] == pytest.approx(employed[key] / days)


# --- The sick-leave rate as SKR defines it: sick hours over scheduled hours ---------------

Q3 = D(2025, 7, 1)


def _rate_cell(tmp_path, roster, spells, basis: str, quarter=Q3) -> tuple[float, float]:
    data = yaml.safe_load(EXAMPLE_PLAN.read_text(encoding="utf-8"))
    data["outcomes"][1]["parameters"] = {"day_basis": basis}
    path = tmp_path / f"plan-{basis}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    con = new_warehouse(tmp_path / f"rate-{basis}.duckdb")
    try:
        _store(con, _roster(roster), _spells(spells))
        panel = outcome_panel(con, load_plan(path), RUN)
    finally:
        con.close()
    cell = _cell(panel, "sick_leave_rate", "HEMTJ-01", quarter)
    return cell["numerator"], cell["denominator"]


def test_rate_on_working_days_as_skr_counts_it(tmp_path):
    """Q3 2025 has 66 working days (July 23, August 21, September 22; no holidays) in 92
    calendar days. A full-time employee sick Monday-Wednesday 1-3 September: SKR's rate is
    3/66 = 4.55 %; counting calendar days gives 3/92 = 3.26 %."""
    spells = [("P", D(2025, 9, 1), D(2025, 9, 3), 100)]
    num, den = _rate_cell(tmp_path, ONE, spells, "working_days")
    assert (num, den) == (3.0, 66.0)
    assert round(num / den, 4) == 0.0455
    num, den = _rate_cell(tmp_path, ONE, spells, "calendar_days")
    assert (num, den) == (3.0, 92.0)


def test_rate_skips_weekends_and_holidays_and_weights_extents(tmp_path):
    """Friday-Monday counts 2 working days; Christmas Eve to Boxing Day (Wed-Fri, all
    holidays in Sweden) counts none; a 50 % spell of a 75 % employee counts 0.375 a day."""
    roster = [("P", "HEMTJ-01", 75, D(2020, 1, 1), None)]
    spells = [
        ("P", D(2025, 8, 8), D(2025, 8, 11), 50),  # Fri 8 - Mon 11 August: 2 working days
        ("P", D(2025, 9, 26), D(2025, 9, 28), 100),  # Fri 26 - Sun 28 September: 1
    ]
    num, den = _rate_cell(tmp_path, roster, spells, "working_days")
    assert den == 66 * 0.75
    assert num == 2 * 0.5 * 0.75 + 1 * 1.0 * 0.75
    christmas = [("P", D(2025, 12, 24), D(2025, 12, 26), 100)]
    (tmp_path / "x").mkdir()
    num, den = _rate_cell(tmp_path / "x", ONE, christmas, "working_days", D(2025, 10, 1))
    # Q4 2025: 66 weekdays (23 + 20 + 23) less 24, 25, 26 and 31 December = 62.
    assert (num, den) == (0.0, 62.0)


def test_workday_calendar_knows_swedish_holidays(example_plan):
    cum = dict(workday_calendar(example_plan).iter_rows())

    def workdays(a: dt.date, b: dt.date) -> int:
        return cum[b] - cum[a - dt.timedelta(days=1)]

    assert workdays(D(2025, 6, 16), D(2025, 6, 22)) == 4  # Midsummer Eve, Friday 20 June
    assert workdays(D(2025, 4, 14), D(2025, 4, 21)) == 4  # Good Friday, Easter Monday
    # 2024: 262 weekdays less 11 weekday holidays (1 Jan, Good Friday 29 Mar, Easter Monday
    # 1 Apr, 1 May, Ascension 9 May, 6 Jun, Midsummer Eve 21 Jun, 24-26 and 31 Dec) = 251.
    assert workdays(D(2024, 1, 1), D(2024, 12, 31)) == 251
