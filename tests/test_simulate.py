"""Tests for utfall.simulate: determinism, validity of clean rows, exact defect bookkeeping,
the known effect and the calibration. Checks are recomputed independently of the simulator."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import date, timedelta

import polars as pl
import pytest

from utfall.simulate import SimulatedDeliveries, SimulationSpec, simulate

VALID_EXTENTS = [25, 50, 75, 100]
SPELL_COLS = ["personnummer", "spell_start", "spell_end", "extent"]

SPEC = SimulationSpec(
    treated_units=("T1", "T2", "T3", "T4", "T5"),
    comparison_units=("C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8"),
    baseline_start=date(2022, 1, 1),
    intervention_start=date(2025, 1, 1),
    measurement_end=date(2025, 12, 31),
    employees=3000,
    defect_rate=0.03,
    seed=7,
)


@pytest.fixture(scope="module")
def dirty() -> SimulatedDeliveries:
    return simulate(SPEC)


@pytest.fixture(scope="module")
def clean() -> SimulatedDeliveries:
    return simulate(dataclasses.replace(SPEC, defect_rate=0.0))


# --- independent reference checks ----------------------------------------------------------------


def luhn_ok(pnr: str) -> bool:
    """Luhn over the 10 digits YYMMDDNNNC (weights 2,1,2,...,1; sum of digits % 10 == 0)."""
    if len(pnr) != 13 or pnr[8] != "-" or not (pnr[:8] + pnr[9:]).isdigit():
        return False
    total = 0
    for i, ch in enumerate(pnr[2:8] + pnr[9:]):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d // 10 + d % 10
    return total % 10 == 0


def fix_check_digit(pnr: str) -> str:
    """Return pnr with the (unique) check digit that makes it valid."""
    for c in "0123456789":
        if luhn_ok(pnr[:-1] + c):
            return pnr[:-1] + c
    raise AssertionError(pnr)


def quarantine_roster(roster: pl.DataFrame) -> dict[str, list[int]]:
    df = roster.with_row_index("row").with_columns(
        ck=pl.col("personnummer").map_elements(luhn_ok, return_dtype=pl.Boolean)
    )
    bad = df.filter(~pl.col("ck"))["row"].to_list()
    rest = df.filter(pl.col("ck"))
    first = rest.select(pl.struct(roster.columns).is_first_distinct()).to_series()
    dup = rest.filter(~first)["row"].to_list()
    return {"invalid_checksum": bad, "duplicate_row": dup}


def quarantine_spells(spells: pl.DataFrame) -> tuple[dict[str, list[int]], pl.DataFrame]:
    """Validator in the documented order; returns flagged row positions and the clean rows."""
    df = spells.with_row_index("row").with_columns(
        ck=~pl.col("personnummer").map_elements(luhn_ok, return_dtype=pl.Boolean),
        ebs=pl.col("spell_end") < pl.col("spell_start"),
        unk=~pl.col("extent").is_in(VALID_EXTENTS),
    )
    n_flags = df.select(pl.sum_horizontal("ck", "ebs", "unk")).to_series()
    assert n_flags.max() <= 1, "a row is defective in more than one way"
    flags = {
        "invalid_checksum": df.filter("ck")["row"].to_list(),
        "end_before_start": df.filter("ebs")["row"].to_list(),
        "unknown_extent": df.filter("unk")["row"].to_list(),
    }
    rest = df.filter(~pl.col("ck") & ~pl.col("ebs") & ~pl.col("unk")).sort("row")
    first = rest.select(pl.struct(SPELL_COLS).is_first_distinct()).to_series()
    flags["duplicate_row"] = rest.filter(~first)["row"].to_list()
    rest = rest.filter(first).sort(["personnummer", "spell_start", "spell_end", "row"])
    rest = rest.with_columns(
        prev_end=pl.col("spell_end").cum_max().shift(1).over("personnummer")
    ).with_columns(ov=pl.col("spell_start") <= pl.col("prev_end"))
    flags["overlapping_spell"] = rest.filter(pl.col("ov").fill_null(False))["row"].to_list()
    good = rest.filter(~pl.col("ov").fill_null(False)).sort("row").select(SPELL_COLS)
    return {k: sorted(v) for k, v in flags.items()}, good


def short_term_days(spells: pl.DataFrame, lo: date, hi: date) -> float:
    first = pl.max_horizontal(pl.col("spell_start"), pl.lit(lo))
    last = pl.min_horizontal(
        pl.col("spell_end"), pl.col("spell_start") + pl.duration(days=13), pl.lit(hi)
    )
    days = ((last - first).dt.total_days() + 1).clip(lower_bound=0)
    return spells.select((days * pl.col("extent")).sum()).item() / 100


# --- determinism ---------------------------------------------------------------------------------


def test_deterministic_same_seed(dirty: SimulatedDeliveries) -> None:
    again = simulate(SPEC)
    assert again.roster.equals(dirty.roster)
    assert again.spells.equals(dirty.spells)
    assert again.roster.write_csv() == dirty.roster.write_csv()
    assert again.spells.write_csv() == dirty.spells.write_csv()
    assert json.dumps(again.truth, sort_keys=True) == json.dumps(dirty.truth, sort_keys=True)


def test_different_seed_differs(dirty: SimulatedDeliveries) -> None:
    other = simulate(dataclasses.replace(SPEC, seed=8))
    assert not other.roster.equals(dirty.roster)
    assert not other.spells.equals(dirty.spells)
    assert other.truth["realized"] != dirty.truth["realized"]


def test_truth_is_json_and_echoes_spec(dirty: SimulatedDeliveries) -> None:
    truth = json.loads(json.dumps(dirty.truth))
    assert truth["effect"] == SPEC.effect
    assert truth["spec"]["treated_units"] == list(SPEC.treated_units)
    assert truth["spec"]["comparison_units"] == list(SPEC.comparison_units)
    assert truth["spec"]["baseline_start"] == "2022-01-01"
    assert truth["spec"]["intervention_start"] == "2025-01-01"
    assert truth["spec"]["measurement_end"] == "2025-12-31"
    assert truth["spec"]["seed"] == SPEC.seed
    assert truth["delivered_rows"] == {"roster": dirty.roster.height, "spells": dirty.spells.height}


def test_schema(dirty: SimulatedDeliveries) -> None:
    assert dirty.roster.schema == pl.Schema(
        {
            "personnummer": pl.String,
            "birth_year": pl.Int64,
            "sex": pl.String,
            "unit_id": pl.String,
            "employment_extent": pl.Int64,
            "employed_from": pl.Date,
            "employed_to": pl.Date,
        }
    )
    assert dirty.spells.schema == pl.Schema(
        {
            "personnummer": pl.String,
            "spell_start": pl.Date,
            "spell_end": pl.Date,
            "extent": pl.Int64,
        }
    )


# --- clean rows are valid ------------------------------------------------------------------------


def test_roster_clean_rows(clean: SimulatedDeliveries) -> None:
    r = clean.roster
    assert r.height == SPEC.employees
    pnrs = r["personnummer"].to_list()
    assert all(luhn_ok(p) for p in pnrs)
    assert r["personnummer"].n_unique() == r.height
    third = r["personnummer"].str.slice(11, 1).cast(pl.Int64)
    assert ((third % 2 == 1) == (r["sex"] == "M")).all()
    assert set(r["sex"].unique().to_list()) == {"K", "M"}
    assert (r["personnummer"].str.slice(0, 4).cast(pl.Int64) == r["birth_year"]).all()
    day = r["personnummer"].str.slice(6, 2).cast(pl.Int64)
    samordning = (day > 60).mean()
    assert 0.01 < samordning < 0.06
    assert ((day % 60 >= 1) & (day % 60 <= 31)).all()
    age = SPEC.baseline_start.year - r["birth_year"]
    assert age.min() >= 19 and age.max() <= 67
    assert set(r["unit_id"].unique().to_list()) <= set(SPEC.treated_units + SPEC.comparison_units)
    ext = r["employment_extent"]
    assert set(ext.unique().to_list()) <= {50, 75, 80, 90, 100}
    assert (ext == 100).mean() > 0.5
    hired = (r["employed_from"] > SPEC.baseline_start).mean()
    left = r["employed_to"].is_not_null().mean()
    assert 0.06 < hired < 0.14 and 0.06 < left < 0.14
    ok_to = r["employed_to"].is_null() | (r["employed_to"] >= r["employed_from"])
    assert ok_to.all()


def test_clean_spells_valid(clean: SimulatedDeliveries) -> None:
    s = clean.spells
    assert all(luhn_ok(p) for p in s["personnummer"].to_list())
    assert (s["spell_end"] >= s["spell_start"]).all()
    assert s["extent"].is_in(VALID_EXTENTS).all()
    assert (s["extent"] == 100).mean() > 0.7
    assert (s["spell_start"] >= SPEC.baseline_start).all()
    assert (s["spell_end"] <= SPEC.measurement_end).all()
    dur = (s["spell_end"] - s["spell_start"]).dt.total_days() + 1
    assert dur.max() <= 180
    assert 0.05 < (dur > 14).mean() < 0.2
    # never overlapping per person
    ov = (
        s.sort(["personnummer", "spell_start", "spell_end"])
        .with_columns(prev=pl.col("spell_end").shift(1).over("personnummer"))
        .filter(pl.col("spell_start") <= pl.col("prev"))
    )
    assert ov.height == 0
    # within employment, every spell's person is on the roster
    joined = s.join(clean.roster, on="personnummer", how="left")
    assert joined["employed_from"].null_count() == 0
    assert (joined["spell_start"] >= joined["employed_from"]).all()
    end_ok = joined["employed_to"].is_null() | (joined["spell_end"] <= joined["employed_to"])
    assert end_ok.all()


def test_no_defects_at_rate_zero(clean: SimulatedDeliveries) -> None:
    t = clean.truth
    assert all(v == 0 for v in t["defects"]["roster"].values())
    assert all(v == 0 for v in t["defects"]["spells"].values())
    assert t["clean_rows"] == {"roster": clean.roster.height, "spells": clean.spells.height}
    assert all(not v for v in quarantine_roster(clean.roster).values())
    flags, good = quarantine_spells(clean.spells)
    assert all(not v for v in flags.values())
    assert good.height == clean.spells.height


# --- defects -------------------------------------------------------------------------------------


def test_defect_counts_match_frames(dirty: SimulatedDeliveries) -> None:
    t = dirty.truth
    rflags = quarantine_roster(dirty.roster)
    sflags, good = quarantine_spells(dirty.spells)
    assert {k: len(v) for k, v in rflags.items()} == t["defects"]["roster"]
    assert {k: len(v) for k, v in sflags.items()} == t["defects"]["spells"]
    # exact rows, not just counts
    assert rflags == t["defect_rows"]["roster"]
    assert sflags == t["defect_rows"]["spells"]
    assert all(v > 0 for v in t["defects"]["roster"].values())
    assert all(v > 0 for v in t["defects"]["spells"].values())
    # about defect_rate x rows per file
    n_sp = sum(t["defects"]["spells"].values())
    n_ro = sum(t["defects"]["roster"].values())
    assert abs(n_sp / t["clean_rows"]["spells"] - SPEC.defect_rate) < 0.01
    assert abs(n_ro / SPEC.employees - SPEC.defect_rate) < 0.01
    # clean rows: counts and they are exactly the defect-free delivery minus in-place defects
    n_bad_roster = len(rflags["invalid_checksum"])
    assert t["clean_rows"]["roster"] == dirty.roster.height - n_bad_roster - len(
        rflags["duplicate_row"]
    )
    assert t["clean_rows"]["spells"] == good.height


def test_defects_leave_clean_data_untouched(
    dirty: SimulatedDeliveries, clean: SimulatedDeliveries
) -> None:
    _, good = quarantine_spells(dirty.spells)
    assert good.join(clean.spells, on=SPELL_COLS, how="anti").height == 0
    in_place = sum(
        dirty.truth["defects"]["spells"][k]
        for k in ("invalid_checksum", "end_before_start", "unknown_extent")
    )
    assert good.height == clean.spells.height - in_place
    assert dirty.truth["realized"] == clean.truth["realized"]


def test_overlap_and_duplicate_extras_point_at_clean_originals(dirty: SimulatedDeliveries) -> None:
    rows = dirty.truth["defect_rows"]["spells"]
    _, good = quarantine_spells(dirty.spells)
    s = dirty.spells.with_row_index("row")
    extras = s.filter(pl.col("row").is_in(rows["overlapping_spell"]))
    inside = extras.join(good, on=["personnummer", "extent"], suffix="_orig").filter(
        (pl.col("spell_start") > pl.col("spell_start_orig"))
        & (pl.col("spell_end") <= pl.col("spell_end_orig"))
        & ((pl.col("spell_end_orig") - pl.col("spell_start_orig")).dt.total_days() >= 2)
    )
    assert inside["row"].n_unique() == extras.height
    dups = s.filter(pl.col("row").is_in(rows["duplicate_row"]))
    originals = dups.join(s, on=SPELL_COLS, suffix="_orig").filter(
        pl.col("row_orig") < pl.col("row")
    )
    assert originals.height == dups.height  # exactly one earlier copy each
    assert dups.select(SPELL_COLS).join(good, on=SPELL_COLS, how="semi").height == dups.height


def test_roster_invalid_checksum_persons_have_no_spells(dirty: SimulatedDeliveries) -> None:
    bad = dirty.roster.filter(
        ~pl.col("personnummer").map_elements(luhn_ok, return_dtype=pl.Boolean)
    )["personnummer"].to_list()
    assert bad
    originals = {fix_check_digit(p) for p in bad}
    prefixes = {p[:-1] for p in originals}
    spell_prefixes = set(dirty.spells["personnummer"].str.slice(0, 12).to_list())
    assert not prefixes & spell_prefixes
    # the original personnummer belongs to no other roster row
    assert not originals & set(dirty.roster["personnummer"].to_list())


def test_spell_invalid_checksum_is_one_digit_off(dirty: SimulatedDeliveries) -> None:
    rows = dirty.truth["defect_rows"]["spells"]["invalid_checksum"]
    bad = dirty.spells.with_row_index("row").filter(pl.col("row").is_in(rows))
    roster_pnrs = set(dirty.roster["personnummer"].to_list())
    assert all(fix_check_digit(p) in roster_pnrs for p in bad["personnummer"].to_list())


# --- effect and calibration ----------------------------------------------------------------------


def test_truth_realized_recomputed_from_frames(clean: SimulatedDeliveries) -> None:
    s = clean.spells.join(clean.roster.select("personnummer", "unit_id"), on="personnummer")
    treated = s.filter(pl.col("unit_id").is_in(list(SPEC.treated_units)))
    obs = short_term_days(treated, SPEC.intervention_start, SPEC.measurement_end)
    r = clean.truth["realized"]
    assert obs == r["treated_short_term_days_measurement"]
    assert obs == r["by_group"]["treated"]["measurement"]["short_term_days"]
    comp = s.filter(pl.col("unit_id").is_in(list(SPEC.comparison_units)))
    base_end = SPEC.intervention_start - timedelta(days=1)
    assert (
        short_term_days(comp, SPEC.baseline_start, base_end)
        == (r["by_group"]["comparison"]["baseline"]["short_term_days"])
    )


def test_calibration_short_term_days_per_employee_year(clean: SimulatedDeliveries) -> None:
    r = clean.roster
    lo, hi = SPEC.baseline_start, SPEC.measurement_end
    first = pl.max_horizontal(pl.col("employed_from"), pl.lit(lo))
    last = pl.col("employed_to").fill_null(hi).clip(upper_bound=hi)
    exposure = r.select(((last - first).dt.total_days() + 1).clip(lower_bound=0).sum()).item()
    # the unthinned total: add back nothing for a zero-effect run, same seed -> same spells
    no_effect = simulate(dataclasses.replace(SPEC, defect_rate=0.0, effect=0.0))
    per_year = short_term_days(no_effect.spells, lo, hi) / (exposure / 365.25)
    assert per_year == pytest.approx(
        no_effect.truth["realized"]["short_term_days_per_employee_year"]
    )
    assert 8.0 <= per_year <= 12.0


def test_zero_effect_changes_nothing_else(clean: SimulatedDeliveries) -> None:
    no_effect = simulate(dataclasses.replace(SPEC, defect_rate=0.0, effect=0.0))
    r = no_effect.truth["realized"]
    assert r["relative_reduction"] == 0.0
    assert r["spells_dropped_by_thinning"] == 0
    assert no_effect.roster.equals(clean.roster)
    # thinning only removes treated spells starting on/after intervention_start
    removed = no_effect.spells.join(clean.spells, on=SPELL_COLS, how="anti")
    assert removed.height == clean.truth["realized"]["spells_dropped_by_thinning"] > 0
    assert (removed["spell_start"] >= SPEC.intervention_start).all()
    units = removed.join(clean.roster, on="personnummer")["unit_id"]
    assert units.is_in(list(SPEC.treated_units)).all()
    assert clean.spells.join(no_effect.spells, on=SPELL_COLS, how="anti").height == 0


def test_realized_reduction_close_to_effect_large_sample() -> None:
    spec = dataclasses.replace(SPEC, employees=20_000, defect_rate=0.0, seed=11)
    r = simulate(spec).truth["realized"]
    assert abs(r["relative_reduction"] - spec.effect) < 0.03
    assert abs(r["expected_relative_reduction_given_spells"] - spec.effect) < 0.005
    assert (
        r["treated_short_term_days_measurement"]
        < (r["treated_short_term_days_measurement_counterfactual"])
    )


# --- spec validation and scale -------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"treated_units": ()},
        {"comparison_units": ("T1",)},
        {"intervention_start": date(2021, 1, 1)},
        {"measurement_end": date(2024, 12, 31)},
        {"effect": 1.5},
        {"defect_rate": -0.1},
        {"employees": 0},
        {"seed": -1},
    ],
)
def test_invalid_spec_rejected(change: dict) -> None:
    with pytest.raises(ValueError):
        simulate(dataclasses.replace(SPEC, **change))


@pytest.mark.slow
def test_scale_100k_employees_4_years() -> None:
    spec = dataclasses.replace(SPEC, employees=100_000, defect_rate=0.02)
    t0 = time.perf_counter()
    out = simulate(spec)
    elapsed = time.perf_counter() - t0
    assert out.roster.height > 100_000
    assert elapsed < 30.0
