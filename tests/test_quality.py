"""Completeness and statistical expectations (Great Expectations) before measurement.

Every expectation is shown to stay quiet on the clean simulated example and to fire on a
delivery broken in exactly the way it is meant to catch, with the answer it must give.
The staged frames are the simulator's clean rows, typed as `utfall.validate.typed` types
them; the synthetic personnummer stands in for `person_id`, so a leak of row content into
a result would show up as an identity number.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from utfall.errors import QualityBlocked, UserError
from utfall.quality import (
    DEFAULT_CONFIG,
    ExpectationResult,
    blocking_failures,
    check_control_file,
    check_source,
    config_problems,
    control_file_result,
    monthly_profile,
    raise_if_blocked,
    resolve_config,
    write_data_docs,
)
from utfall.simulate import SimulationSpec, simulate

ROSTER, SPELLS = "employee_roster", "sick_leave_spells"
ROSTER_CHECKS = [
    "volume_vs_history",
    "periods_present",
    "units_present",
    "null_share",
    "value_ranges",
]
SPELL_CHECKS = [
    "volume_vs_history",
    "volume_vs_baseline",
    "periods_present",
    "null_share",
    "value_ranges",
]


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def staged(example_plan) -> dict[str, pl.DataFrame]:
    """The example's clean deliveries (4 000 employees), as staged frames."""
    plan = example_plan
    b0, _ = plan.period("baseline")
    m0, m1 = plan.period("measurement")
    sim = simulate(
        SimulationSpec(
            treated_units=tuple(plan.treated_units),
            comparison_units=tuple(plan.comparison_units),
            baseline_start=b0,
            intervention_start=m0,
            measurement_end=m1,
            employees=4000,
            seed=plan.counterfactual["seed"],
        )
    )

    def as_staged(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.rename({"personnummer": "person_id"}).with_columns(
            pl.lit("delivery.csv").alias("_file"),
            pl.int_range(2, frame.height + 2, dtype=pl.Int64).alias("_line"),
        )

    return {ROSTER: as_staged(sim.roster), SPELLS: as_staged(sim.spells)}


@pytest.fixture(scope="module")
def profiles(staged, example_plan) -> dict[str, pl.DataFrame]:
    return {kind: monthly_profile(kind, frame, example_plan) for kind, frame in staged.items()}


@pytest.fixture(scope="module")
def clean(staged, profiles, example_plan) -> dict[str, list[ExpectationResult]]:
    """Clean deliveries checked against themselves as the previous delivery."""
    return {
        kind: check_source(
            kind,
            "roster" if kind == ROSTER else "sick_leave",
            frame,
            example_plan,
            DEFAULT_CONFIG,
            profiles[kind],
            delivered_rows=frame.height,
        )
        for kind, frame in staged.items()
    }


@pytest.fixture(scope="module")
def cut_spells(staged) -> pl.DataFrame:
    """The spells file cut to its first 80 % of rows (ordered by start: the last months go)."""
    spells = staged[SPELLS]
    return spells.head(int(spells.height * 0.8))


@pytest.fixture(scope="module")
def cut_results(cut_spells, profiles, example_plan) -> list[ExpectationResult]:
    return check_source(
        SPELLS,
        "sick_leave",
        cut_spells,
        example_plan,
        DEFAULT_CONFIG,
        profiles[SPELLS],
        delivered_rows=cut_spells.height,
    )


def by_name(results: list[ExpectationResult]) -> dict[str, ExpectationResult]:
    return {r.expectation: r for r in results}


def months_after(day: dt.date, last: dt.date) -> list[str]:
    out, year, month = [], day.year, day.month
    while True:
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        if (year, month) > (last.year, last.month):
            return out
        out.append(f"{year:04d}-{month:02d}")


# --- the clean example ---------------------------------------------------------------------


def test_clean_example_passes_every_expectation(clean):
    roster, spells = clean[ROSTER], clean[SPELLS]
    assert [r.expectation for r in roster] == ROSTER_CHECKS
    assert [r.expectation for r in spells] == SPELL_CHECKS
    failed = [(r.source, r.expectation, r.observed) for r in roster + spells if not r.success]
    assert failed == []
    assert blocking_failures(roster + spells) == []
    raise_if_blocked(roster + spells)  # does not raise
    # The volume checks really compared something (they pass because volumes agree).
    assert by_name(spells)["volume_vs_history"].details["months_compared"] == 48
    assert by_name(spells)["volume_vs_baseline"].details["months_compared"] == 12
    assert by_name(roster)["periods_present"].observed == (
        "all 48 months from 2022-01 to 2025-12 have employees"
    )
    assert by_name(roster)["units_present"].observed == "all 34 plan units have eligible employees"
    # employed_to is empty for everyone still employed: not a missing value.
    null_share = by_name(roster)["null_share"]
    assert null_share.details["null_share"].keys() == {
        "person_id",
        "birth_year",
        "sex",
        "unit_id",
        "employment_extent",
        "employed_from",
    }
    assert null_share.details["not_judged"] == {"employed_to": "empty means still employed"}


def test_severities_come_from_the_config(clean):
    for r in clean[ROSTER] + clean[SPELLS]:
        assert r.severity == DEFAULT_CONFIG["expectations"][r.expectation]["severity"]


def test_results_are_json_and_hold_no_row_content(clean, cut_results, staged):
    text = json.dumps([r.to_dict() for r in clean[ROSTER] + clean[SPELLS] + cut_results])
    some_people = staged[ROSTER]["person_id"].head(200).to_list()
    assert not [p for p in some_people if p in text]


# --- a partial delivery ------------------------------------------------------------------


def test_spells_cut_to_80_percent_fail_periods_present_and_block(
    cut_results, cut_spells, example_plan
):
    results = by_name(cut_results)
    _, measurement_end = example_plan.period("measurement")
    last_start = cut_spells["spell_start"].max()
    empty = months_after(last_start, measurement_end)
    assert empty[0].startswith("2025") and empty[-1] == "2025-12" and len(empty) >= 6

    periods = results["periods_present"]
    assert (periods.success, periods.severity) == (False, "block")
    assert periods.details["empty_months"] == empty
    assert periods.observed == f"{len(empty)} of 48 months have no row: {empty[0]}..2025-12"

    baseline = results["volume_vs_baseline"]
    assert not baseline.success
    outside = [m["month"] for m in baseline.details["months_outside"]]
    assert set(empty) <= set(outside)  # the partly cut month may be outside too
    history = results["volume_vs_history"]
    assert not history.success
    assert {m["month"]: m["relative_change"] for m in history.details["months_outside"]}[
        "2025-12"
    ] == -1.0
    # Rows that did arrive are fine.
    assert results["value_ranges"].success and results["null_share"].success

    assert [f.expectation for f in blocking_failures(cut_results)] == ["periods_present"]
    with pytest.raises(QualityBlocked) as err:
        raise_if_blocked(cut_results)
    assert isinstance(err.value, UserError)
    assert f"sick_leave: periods_present: {periods.observed}" in str(err.value)


def test_periods_present_counts_employees_on_the_roster(staged, profiles, example_plan):
    # Everyone leaves at the end of 2024: 2025 has no employee on the first of any month.
    roster = staged[ROSTER].with_columns(
        pl.min_horizontal(
            pl.col("employed_to").fill_null(dt.date(2024, 12, 31)), pl.lit(dt.date(2024, 12, 31))
        ).alias("employed_to")
    )
    roster = roster.filter(pl.col("employed_from") <= pl.col("employed_to"))
    results = by_name(check_source(ROSTER, "roster", roster, example_plan))
    assert not results["periods_present"].success
    assert results["periods_present"].details["empty_months"] == [
        f"2025-{m:02d}" for m in range(1, 13)
    ]
    assert results["periods_present"].observed == (
        "12 of 48 months have no employee: 2025-01..2025-12"
    )


# --- units ---------------------------------------------------------------------------------


def test_a_plan_unit_missing_from_the_roster_is_named(staged, example_plan):
    roster = staged[ROSTER].filter(pl.col("unit_id") != "FSK-03")
    results = by_name(check_source(ROSTER, "roster", roster, example_plan))
    units = results["units_present"]
    assert (units.success, units.severity) == (False, "block")
    assert units.details["missing_units"] == [
        {"unit_id": "FSK-03", "group": "treated", "roster_rows": 0, "employees": 0}
    ]
    assert units.observed == (
        "1 of 34 plan units has no eligible employee in the roster: FSK-03 (treated)"
    )
    with pytest.raises(QualityBlocked, match=r"roster: units_present: .*FSK-03 \(treated\)"):
        raise_if_blocked(results.values())


def test_a_unit_with_only_ineligible_employees_is_missing_too(staged, example_plan):
    # ADM-02's employees all work below the plan's minimum extent (25 %).
    roster = staged[ROSTER].with_columns(
        pl.when(pl.col("unit_id") == "ADM-02")
        .then(10)
        .otherwise(pl.col("employment_extent"))
        .alias("employment_extent")
    )
    rows = roster.filter(pl.col("unit_id") == "ADM-02").height
    units = by_name(check_source(ROSTER, "roster", roster, example_plan))["units_present"]
    assert not units.success
    assert units.details["missing_units"] == [
        {"unit_id": "ADM-02", "group": "comparison", "roster_rows": rows, "employees": 0}
    ]


# --- volume --------------------------------------------------------------------------------


def test_a_20_percent_drop_against_history_fails_volume_vs_history(staged, profiles, example_plan):
    spells = staged[SPELLS]
    profile = profiles[SPELLS]
    in_2024 = pl.col("month").dt.year() == 2024

    def history_with(change: float) -> pl.DataFrame:  # this delivery = history x (1 + change)
        return profile.with_columns(
            pl.when(in_2024)
            .then((pl.col("rows") / (1 + change)).round(0).cast(pl.Int64))
            .otherwise(pl.col("rows"))
            .alias("rows")
        )

    dropped = by_name(
        check_source(SPELLS, "sick_leave", spells, example_plan, None, history_with(-0.20))
    )
    volume = dropped["volume_vs_history"]
    assert (volume.success, volume.severity) == (False, "warn")
    outside = volume.details["months_outside"]
    assert [m["month"] for m in outside] == [f"2024-{m:02d}" for m in range(1, 13)]
    assert all(abs(m["relative_change"] + 0.20) < 0.001 for m in outside)
    assert volume.observed.startswith(
        "12 of 48 months differ by more than ±15 % from the previous delivery: 2024-01 (-20 %)"
    )
    assert blocking_failures(dropped.values()) == []  # warn: reported, not blocking

    small = by_name(
        check_source(SPELLS, "sick_leave", spells, example_plan, None, history_with(-0.10))
    )
    assert small["volume_vs_history"].success


def test_first_delivery_has_no_history_to_compare(staged, example_plan):
    results = by_name(check_source(SPELLS, "sick_leave", staged[SPELLS], example_plan))
    volume = results["volume_vs_history"]
    assert (volume.success, volume.observed) == (True, "no earlier delivery")
    assert "gx" not in volume.details


def test_roster_cut_to_80_percent_fails_volume_vs_history(staged, profiles, example_plan):
    roster = staged[ROSTER]
    cut = roster.head(int(roster.height * 0.8))  # ordered by unit: whole units go missing
    results = by_name(check_source(ROSTER, "roster", cut, example_plan, None, profiles[ROSTER]))
    assert not results["volume_vs_history"].success
    assert results["volume_vs_history"].details["months_compared"] == 48
    assert not results["units_present"].success


# --- values --------------------------------------------------------------------------------


def test_nulls_above_max_share_are_flagged(staged, example_plan):
    roster = staged[ROSTER].with_row_index("i")

    def with_empty_birth_years(share: float) -> pl.DataFrame:
        n = int(roster.height * share)
        return roster.with_columns(
            pl.when(pl.col("i") < n).then(None).otherwise(pl.col("birth_year")).alias("birth_year")
        ).drop("i")

    nulls = by_name(check_source(ROSTER, "roster", with_empty_birth_years(0.03), example_plan))
    share = nulls["null_share"]
    assert (share.success, share.severity) == (False, "warn")
    assert share.details["columns_above_max"] == ["birth_year"]
    assert share.details["null_share"]["birth_year"] == 0.03
    assert share.observed == "birth_year 3.0 % empty (max 2.0 %)"

    few = by_name(check_source(ROSTER, "roster", with_empty_birth_years(0.01), example_plan))
    assert few["null_share"].success
    assert few["null_share"].details["null_share"]["birth_year"] == 0.01


def test_values_out_of_range_fail_value_ranges(staged, example_plan):
    spells = staged[SPELLS].with_row_index("i")
    bad = spells.with_columns(
        pl.when(pl.col("i") < 5).then(30).otherwise(pl.col("extent")).alias("extent"),
        pl.when(pl.col("i").is_between(10, 11))
        .then(pl.col("spell_start") - pl.duration(days=1))
        .otherwise(pl.col("spell_end"))
        .alias("spell_end"),
        pl.when(pl.col("i") == 20)
        .then(pl.lit(dt.date(1999, 1, 1)))
        .otherwise(pl.col("spell_start"))
        .alias("spell_start"),
    ).drop("i")
    ranges = by_name(check_source(SPELLS, "sick_leave", bad, example_plan))["value_ranges"]
    assert (ranges.success, ranges.severity) == (False, "block")
    assert ranges.details["broken"] == [
        {"column": "extent", "rule": "not one of 25, 50, 75, 100", "rows": 5},
        {"column": "spell_start", "rule": "outside 2021-01-01..2026-12-31", "rows": 1},
        {"column": "spell_end", "rule": "before spell_start", "rows": 2},
    ]
    assert ranges.observed == (
        "extent: 5 rows not one of 25, 50, 75, 100; spell_start: 1 row outside "
        "2021-01-01..2026-12-31; spell_end: 2 rows before spell_start"
    )

    roster = staged[ROSTER].with_row_index("i")
    bad_roster = roster.with_columns(
        pl.when(pl.col("i") < 3).then(1850).otherwise(pl.col("birth_year")).alias("birth_year")
    ).drop("i")
    r = by_name(check_source(ROSTER, "roster", bad_roster, example_plan))["value_ranges"]
    assert r.details["broken"] == [
        {"column": "birth_year", "rule": "outside 1900..2025", "rows": 3}
    ]


# --- edge cases and configuration ----------------------------------------------------------


@pytest.mark.parametrize("kind, source", [(ROSTER, "roster"), (SPELLS, "sick_leave")])
def test_an_empty_staged_frame_fails_every_expectation(
    kind, source, staged, profiles, example_plan
):
    empty = staged[kind].head(0)
    results = check_source(
        kind, source, empty, example_plan, None, profiles[kind], delivered_rows=1234
    )
    assert [r.expectation for r in results] == (ROSTER_CHECKS if kind == ROSTER else SPELL_CHECKS)
    assert [r.expectation for r in results if r.success] == []
    named = by_name(results)
    assert (
        named["value_ranges"].observed
        == "no rows to judge (0 rows passed validation of 1,234 delivered)"
    )
    assert named["periods_present"].details["empty_months"][0] == "2022-01"
    assert len(named["periods_present"].details["empty_months"]) == 48


def test_severity_off_skips_and_warn_does_not_block(cut_spells, profiles, example_plan):
    off = {"expectations": {"periods_present": {"severity": "off"}}}
    results = check_source(SPELLS, "sick_leave", cut_spells, example_plan, off, profiles[SPELLS])
    assert "periods_present" not in [r.expectation for r in results]
    assert [r.expectation for r in results] == [c for c in SPELL_CHECKS if c != "periods_present"]
    assert blocking_failures(results) == []

    warn = {"expectations": {"periods_present": {"severity": "warn"}}}
    results = by_name(check_source(SPELLS, "sick_leave", cut_spells, example_plan, warn))
    assert (results["periods_present"].success, results["periods_present"].severity) == (
        False,
        "warn",
    )
    raise_if_blocked(results.values())  # reported, not blocking


def test_config_problems_name_the_key():
    assert config_problems(DEFAULT_CONFIG) == []
    assert config_problems(None) == []
    bad = {
        "controlfile": "x.csv",
        "expectations": {
            "null_share": {"severity": "fatal", "max_share": 2},
            "volume_vs_histroy": {"severity": "warn"},
            "periods_present": {"severity": "block", "max_share": 0.1},
        },
    }
    assert config_problems(bad) == [
        ("controlfile", "unknown key; expected one of: control_file, expectations"),
        ("expectations.null_share.severity", "'fatal'; expected one of: block, warn, off"),
        ("expectations.null_share.max_share", "2 is outside 0.0..1.0"),
        (
            "expectations.volume_vs_histroy",
            "unknown expectation; expected one of: volume_vs_history, volume_vs_baseline, "
            "periods_present, units_present, null_share, value_ranges",
        ),
        ("expectations.periods_present.max_share", "unknown setting; expected one of: severity"),
    ]
    with pytest.raises(ValueError, match="expectations.null_share.severity"):
        resolve_config(bad)
    # A partial configuration keeps the defaults for the rest.
    merged = resolve_config({"expectations": {"null_share": {"max_share": 0.05}}})
    assert merged["expectations"]["null_share"] == {"severity": "warn", "max_share": 0.05}
    assert merged["expectations"]["periods_present"] == {"severity": "block"}
    assert DEFAULT_CONFIG["expectations"]["null_share"]["max_share"] == 0.02  # not mutated


def test_quality_blocked_message_has_one_line_per_blocking_failure():
    results = [
        ExpectationResult(
            "sick_leave",
            "periods_present",
            "block",
            False,
            "3 of 48 months have no row: 2025-10..2025-12",
        ),
        ExpectationResult(
            "sick_leave", "null_share", "warn", False, "extent 5.0 % empty (max 2.0 %)"
        ),
        ExpectationResult(
            "roster", "units_present", "block", True, "all 34 plan units have eligible employees"
        ),
        ExpectationResult(
            "roster", "value_ranges", "block", False, "birth_year: 3 rows outside 1900..2025"
        ),
    ]
    assert [r.expectation for r in blocking_failures(results)] == [
        "periods_present",
        "value_ranges",
    ]
    with pytest.raises(QualityBlocked) as err:
        raise_if_blocked(results)
    assert str(err.value).splitlines() == [
        "the delivery failed 2 blocking data-quality expectations; nothing was measured:",
        "  sick_leave: periods_present: 3 of 48 months have no row: 2025-10..2025-12",
        "  roster: value_ranges: birth_year: 3 rows outside 1900..2025",
    ]
    raise_if_blocked(results[1:3])  # a warn failure and a success: no error


def test_monthly_profile_counts_by_month(example_plan):
    spells = pl.DataFrame(
        {
            "person_id": ["a", "b", "c", "d"],
            "spell_start": [
                dt.date(2022, 1, 31),
                dt.date(2022, 1, 1),
                dt.date(2022, 3, 5),
                dt.date(2021, 12, 31),
            ],
            "spell_end": [
                dt.date(2022, 2, 2),
                dt.date(2022, 1, 1),
                dt.date(2022, 3, 5),
                dt.date(2022, 1, 2),
            ],
            "extent": [100, 50, 100, 100],
        }
    )
    profile = monthly_profile(SPELLS, spells, example_plan)
    assert profile.schema == pl.Schema({"month": pl.Date, "rows": pl.Int64})
    assert profile.height == 48 and profile["month"][0] == dt.date(2022, 1, 1)
    assert profile["rows"].head(4).to_list() == [2, 0, 1, 0]  # the 2021 spell is outside
    assert profile["rows"].sum() == 3

    roster = pl.DataFrame(
        {
            "person_id": ["a", "b", "c", "d", "e"],
            "birth_year": [1970] * 5,
            "sex": ["K"] * 5,
            "unit_id": ["U"] * 5,
            "employment_extent": [100] * 5,
            "employed_from": [
                dt.date(2010, 1, 1),
                dt.date(2022, 1, 2),
                dt.date(2022, 1, 1),
                dt.date(2022, 2, 1),
                dt.date(2022, 3, 1),
            ],
            "employed_to": [
                None,
                None,
                dt.date(2022, 1, 31),
                dt.date(2022, 2, 1),
                dt.date(2022, 1, 1),
            ],
        },
        schema_overrides={"employed_to": pl.Date},
    )
    # a: always; b: from February; c: January only; d: February only; e: ends before it starts
    assert monthly_profile(ROSTER, roster, example_plan)["rows"].head(4).to_list() == [2, 3, 2, 2]


def test_unknown_kind_and_missing_columns_are_bugs(staged, example_plan):
    with pytest.raises(ValueError, match="no quality expectations for source kind 'x'"):
        check_source("x", "x", staged[SPELLS], example_plan)
    with pytest.raises(ValueError, match="lacks column"):
        check_source(SPELLS, "sick_leave", staged[SPELLS].drop("extent"), example_plan)


# --- Great Expectations ------------------------------------------------------------------


def test_importing_utfall_quality_does_not_import_gx():
    """In a fresh process. (GX's own quietness there, no progress bar and nothing written to
    the working directory, is checked on a real `utfall run` subprocess in test_cli.)"""
    code = "import sys, utfall.quality\nprint('great_expectations' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["False"]


def test_an_expectation_gx_cannot_evaluate_raises_instead_of_failing():
    import great_expectations.expectations as gxe

    from utfall.quality import gx_run

    frame = pl.DataFrame({"day": [dt.date(2022, 1, 1)]})
    # A datetime.date bound on a date column: GX reports a bare failure, the error hidden.
    broken = gxe.ExpectColumnValuesToBeBetween(column="day", min_value=dt.date(2021, 1, 1))
    with pytest.raises(RuntimeError, match="could not evaluate expect_column_values_to_be_between"):
        gx_run.validate("test.broken", frame, [broken])
    fixed = gxe.ExpectColumnValuesToBeBetween(column="day", min_value=dt.datetime(2021, 1, 1))
    assert gx_run.validate("test.fixed", frame, [fixed])[0]["success"]


def test_results_are_identical_between_runs(staged, example_plan):
    """The report's bytes must not change on a re-run: no timings or ids in the results."""
    spells = staged[SPELLS].head(2000)
    first = [r.to_dict() for r in check_source(SPELLS, "sick_leave", spells, example_plan)]
    again = [r.to_dict() for r in check_source(SPELLS, "sick_leave", spells, example_plan)]
    assert json.dumps(first) == json.dumps(again)


def test_dates_reach_gx_as_nanosecond_datetimes():
    """GX's range check on datetime64[ms] (polars' default) is ~35x slower than on [ns]."""
    from utfall.quality import gx_run

    frame = pl.DataFrame({"day": [dt.date(2022, 1, 1), None], "n": [1, 2]})
    assert str(gx_run.to_pandas(frame)["day"].dtype) == "datetime64[ns]"


def test_data_docs_render_the_gx_results(cut_results, clean, staged, example_plan, tmp_path):
    index = write_data_docs(
        {"roster": clean[ROSTER], "sick_leave": cut_results},
        tmp_path,
        run_time=dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.UTC),
    )
    assert index == tmp_path / "data_docs" / "index.html" and index.is_file()
    pages = sorted(
        p.relative_to(index.parent).as_posix() for p in index.parent.glob("validations/**/*.html")
    )
    assert len(pages) == 10  # one page per GX-judged result (5 per source)
    page = next(index.parent.glob("validations/sick_leave/periods_present/**/*.html")).read_text()
    assert "Failed" in page and "2025-12" in page
    html = "".join(p.read_text() for p in index.parent.glob("**/*.html"))
    assert not [p for p in staged[ROSTER]["person_id"].head(200).to_list() if p in html]
    # Building the docs made another GX context current; checking still works.
    again = check_source(SPELLS, "sick_leave", staged[SPELLS].head(500), example_plan)
    assert by_name(again)["value_ranges"].success
    # Re-writing replaces the site.
    assert write_data_docs({"sick_leave": cut_results}, tmp_path) == index
    assert not list(index.parent.glob("validations/roster/**/*.html"))


# --- control file --------------------------------------------------------------------------


def _deliver(folder: Path, files: dict[str, str]) -> list[tuple[str, int, str]]:
    delivered = []
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        rows = len(text.strip().splitlines()) - 1
        delivered.append((name, rows, hashlib.sha256(path.read_bytes()).hexdigest()))
    return delivered


@pytest.fixture
def delivered(tmp_path) -> list[tuple[str, int, str]]:
    return _deliver(
        tmp_path,
        {
            "roster.csv": "a,b\n1,2\n3,4\n",
            "sick_leave_1.csv": "a\n1\n2\n3\n",
            "sick_leave_2.csv": "a\n9\n",
        },
    )


def _control(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "control.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _lines(delivered) -> list[str]:
    return ["file,rows,sha256"] + [f"{f},{r},{s}" for f, r, s in delivered]


def test_a_matching_control_file_has_no_problems(tmp_path, delivered):
    path = _control(tmp_path, _lines(delivered) + [""])
    assert check_control_file(path, delivered) == []
    result = control_file_result(path, delivered)
    assert (result.success, result.severity, result.observed) == (
        True,
        "block",
        "all 3 delivered files match control.csv",
    )


def test_control_file_mismatches_name_the_file_and_both_values(tmp_path, delivered):
    (r_name, r_rows, r_sha), (s1_name, _, s1_sha), (s2_name, s2_rows, s2_sha) = delivered
    wrong_sha = "0" * 64
    path = _control(
        tmp_path,
        [
            "file,rows,sha256",
            f"{r_name},{r_rows + 1},{r_sha}",  # row count differs
            f"./{s1_name},3,{wrong_sha}",  # sha differs (./ prefix is fine)
            f"extra.csv,5,{s2_sha}",  # listed, not delivered
        ],
    )
    # sick_leave_2.csv is delivered but not listed
    assert check_control_file(path, delivered) == [
        f"roster.csv: {r_rows} data rows delivered, control.csv says {r_rows + 1}",
        f"sick_leave_1.csv: sha256 delivered {s1_sha}, control.csv says {wrong_sha}",
        "sick_leave_2.csv: delivered but not listed in control.csv",
        "extra.csv: listed in control.csv (line 4) but not delivered",
    ]
    result = control_file_result(path, delivered)
    assert not result.success and result.observed.startswith("4 problems: roster.csv: ")
    with pytest.raises(QualityBlocked, match="deliveries: control_file: 4 problems"):
        raise_if_blocked([result])


def test_a_cut_file_is_caught_by_its_control_file(tmp_path, delivered):
    path = _control(tmp_path, _lines(delivered))
    cut = _deliver(tmp_path, {"sick_leave_1.csv": "a\n1\n2\n"})  # the provider's file, cut
    now = [cut[0] if f == "sick_leave_1.csv" else (f, r, s) for f, r, s in delivered]
    problems = check_control_file(path, now)
    assert problems == [
        "sick_leave_1.csv: 2 data rows delivered, control.csv says 3",
        f"sick_leave_1.csv: sha256 delivered {cut[0][2]}, control.csv says {delivered[1][2]}",
    ]


@pytest.mark.parametrize(
    "lines, expected",
    [
        (
            ["file;rows;sha256", "x"],
            ["control.csv: line 1: expected the header file,rows,sha256 (1 field(s) found)"],
        ),
        ([], ["control.csv: the control file is empty; expected the header file,rows,sha256"]),
        (
            ["file,rows,sha256", "roster.csv,2", "roster.csv,two,{roster_sha}"],
            [
                "control.csv: line 2: expected 3 fields (file,rows,sha256), found 2",
                "control.csv: line 3: rows of roster.csv is not a whole number",
            ],
        ),
        (
            ["file,rows,sha256", "roster.csv,2,abc", ",1,{roster_sha}"],
            [
                "control.csv: line 2: sha256 of roster.csv is not 64 hexadecimal digits",
                "control.csv: line 3: the file name is empty",
            ],
        ),
        (
            ["file,rows,sha256", "roster.csv,2,{roster_sha}", "roster.csv,2,{roster_sha}"],
            ["control.csv: line 3: roster.csv is listed again (first on line 2)"],
        ),
    ],
)
def test_a_malformed_control_file_names_the_line(tmp_path, delivered, lines, expected):
    roster_sha = delivered[0][2]
    path = _control(tmp_path, [line.format(roster_sha=roster_sha) for line in lines])
    if not lines:
        path.write_text("", encoding="utf-8")
    only_roster = delivered[:1]
    assert check_control_file(path, only_roster) == expected


def test_a_missing_or_binary_control_file_is_a_problem(tmp_path, delivered):
    assert check_control_file(tmp_path / "control.csv", delivered) == [
        "control.csv: control file not found in the deliveries folder"
    ]
    path = tmp_path / "control.csv"
    path.write_bytes(b"file,rows,sha256\nr\xe9.csv,1,x\n")
    assert check_control_file(path, delivered) == ["control.csv: line 2: not UTF-8 text (byte 18)"]


def test_control_file_problems_never_echo_line_content(tmp_path, delivered):
    # A roster given as control file by mistake: its identity numbers must not be echoed.
    path = _control(tmp_path, ["file,rows,sha256", "19550222-2994,K,ADM-01,100"])
    problems = check_control_file(path, delivered)
    assert problems[0] == "control.csv: line 2: expected 3 fields (file,rows,sha256), found 4"
    assert not [p for p in problems if "19550222" in p]
