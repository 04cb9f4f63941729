"""Lab analytes beyond HbA1c (utfall.domains.labs): fasting glucose (mmol/L; mg/dL converted,
hand-computed), weight and BMI with their hard and warning ranges at the bounds, unknown
analytes quarantined by name, HbA1c as before (IFCC, NGSP, Mono-S hand-computed), and the
plan's `mono_s` choice (convert or quarantine) through the lab_results kind."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl
import pytest

from utfall.domains import labs
from utfall.kinds import lab_results

D = dt.date


def rows(*items, person=None):
    return pl.DataFrame(
        [
            {"person_id": person or f"p{i}", "sample_date": d, "analyte": a, "value": v, "unit": u}
            for i, (d, a, v, u) in enumerate(items)
        ],
        schema={
            "person_id": pl.Utf8,
            "sample_date": pl.Date,
            "analyte": pl.Utf8,
            "value": pl.Utf8,
            "unit": pl.Utf8,
        },
    )


MARCH = D(2024, 3, 1)


def one(analyte, value, unit, day=MARCH, **kw):
    valid, bad = labs.validate(rows((day, analyte, value, unit)), **kw)
    return valid.to_dicts(), bad.to_dicts()


def test_glucose_mg_dl_by_hand():
    # 126 / 18.016 = 6.99378... -> 6.99; 100 / 18.016 = 5.55062... -> 5.55;
    # 99 / 18.016 = 5.49511... -> 5.50 (half up at the second decimal: 5.495 -> 5.50)
    assert labs.glucose_mg_dl_to_mmol_l(Decimal(126)).quantize(Decimal("0.01")) == Decimal("6.99")
    for mg, mmol in (("126", 6.99), ("100", 5.55), ("99", 5.5), ("18,016", 1.0)):
        valid, bad = one("Fasting glucose", mg, "mg/dL")
        assert bad == [] and valid[0]["value"] == mmol, mg
        assert (valid[0]["unit"], valid[0]["conversion"]) == ("mmol/L", "mg_dl")
        assert valid[0]["analyte"] == "fasting_glucose"


def test_values_in_the_stored_unit_are_kept_as_delivered():
    cases = [
        ("fP-Glukos", "6,123", "mmol/l", "fasting_glucose", 6.123, "mmol/L", "mmol_l"),
        ("Vikt", "81.4", "kg", "weight", 81.4, "kg", "kg"),
        ("BMI", "27.31", "kg/m²", "bmi", 27.31, "kg/m2", "kg_m2"),
        ("HbA1c", "44", "mmol/mol", "HbA1c", 44.0, "mmol/mol", "ifcc"),
    ]
    for name, value, unit, analyte, stored, stored_unit, conversion in cases:
        valid, bad = one(name, value, unit)
        assert bad == [], name
        got = valid[0]
        assert (got["analyte"], got["value"], got["unit"], got["conversion"]) == (
            analyte,
            stored,
            stored_unit,
            conversion,
        )
        assert got["unit_delivered"] == unit and got["warning"] is None


def test_hba1c_conversions_by_hand():
    # NGSP: 10.929 x (6.5 - 2.152) = 47.519292 -> 48; Mono-S: 10.11 x 5.5 - 8.9 = 46.705 -> 47
    valid, _ = one("HbA1c", "6.5", "% NGSP")
    assert (valid[0]["value"], valid[0]["conversion"]) == (48.0, "ngsp")
    valid, _ = one("HbA1c", "5.5", "%", day=D(2009, 5, 1))
    assert (valid[0]["value"], valid[0]["conversion"]) == (47.0, "mono_s")
    valid, _ = one("HbA1c", "5.5", "%", day=D(2010, 9, 1))  # after the cut-over: NGSP
    assert (valid[0]["value"], valid[0]["conversion"]) == (37.0, "ngsp")  # 36.67 -> 37


@pytest.mark.parametrize(
    "analyte,unit,inside,outside",
    [
        ("fasting glucose", "mmol/L", ("1", "50"), ("0.99", "50.01")),
        ("weight", "kg", ("20", "350"), ("19.9", "350.1")),
        ("bmi", "kg/m2", ("10", "80"), ("9.99", "80.5")),
    ],
)
def test_hard_ranges_include_their_bounds(analyte, unit, inside, outside):
    for v in inside:
        valid, bad = one(analyte, v, unit)
        assert bad == [] and valid[0]["warning"] is not None, (analyte, v)
    for v in outside:
        valid, bad = one(analyte, v, unit)
        assert valid == [] and bad[0]["rule"] == "out_of_range", (analyte, v)
        assert "outside" in bad[0]["detail"]


def test_warning_ranges_at_their_bounds():
    for analyte, unit, low, high, word in (
        ("fasting glucose", "mmol/L", "3", "20", "outside_3_20"),
        ("weight", "kg", "35", "250", "outside_35_250"),
        ("bmi", "kg/m2", "15", "60", "outside_15_60"),
    ):
        for v in (low, high):
            assert one(analyte, v, unit)[0][0]["warning"] is None
        below = str(Decimal(low) - Decimal("0.1"))
        assert one(analyte, below, unit)[0][0]["warning"] == word


def test_glucose_converted_out_of_range_uses_the_stored_value():
    # 1000 mg/dL = 55.51 mmol/L > 50
    valid, bad = one("fasting glucose", "1000", "mg/dL")
    assert valid == [] and bad[0]["rule"] == "out_of_range"
    assert bad[0]["detail"] == "55.51 mmol/L outside 1-50"


def test_every_rule_is_named():
    valid, bad = labs.validate(
        rows(
            (D(2024, 1, 1), "HbA1c", "44", "mmol/mol"),
            (D(2024, 1, 1), "HbA1c", "44", "mmol/mol"),  # duplicate_row
            (D(2024, 1, 1), "kolesterol", "5", "mmol/L"),  # unknown_analyte
            (D(2024, 1, 1), "weight", "heavy", "kg"),  # value_not_a_number
            (D(2024, 1, 1), "weight", "180", "lb"),  # unknown_unit
            (D(2024, 1, 1), "fasting glucose", "6", "mmol/mol"),  # unknown_unit
            (D(2024, 1, 1), "bmi", "", "kg/m2"),  # missing_field
            (D(2009, 1, 1), "HbA1c", "5.5", "%"),  # mono_s_not_converted
            person="p",
        ),
        mono_s="quarantine",
    )
    assert valid.height == 1
    assert bad.select("rule", "detail").rows() == [
        ("duplicate_row", None),
        ("unknown_analyte", "kolesterol"),
        ("value_not_a_number", "heavy"),
        ("unknown_unit", "lb"),
        ("unknown_unit", "mmol/mol"),
        ("missing_field", "value"),
        ("mono_s_not_converted", "5.5 % Mono-S"),
    ]


def _kind_rows():
    raw = rows(
        (D(2009, 3, 1), "HbA1c", "5.5", "%"),  # Mono-S
        (D(2012, 3, 1), "HbA1c", "5.5", "% Mono-S"),  # Mono-S by its unit
        (D(2012, 3, 1), "HbA1c", "6.5", "%"),  # NGSP
        (D(2012, 3, 1), "HbA1c", "44", "mmol/mol"),
    )
    return raw.with_columns(
        pl.col("sample_date").cast(pl.Utf8),
        pl.lit(None, dtype=pl.Utf8).alias("pnr_problem"),
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("_pos"),
        pl.lit("f.csv").alias("_file"),
        pl.int_range(pl.len()).alias("_line"),
    )


def test_the_plan_key_mono_s_through_the_kind():
    valid, fails = lab_results.validate(_kind_rows(), {"name": "labb"})
    assert valid["conversion"].to_list() == ["mono_s", "mono_s", "ngsp", "ifcc"]
    assert valid["value"].to_list() == [47.0, 47.0, 48.0, 44.0]
    assert fails.height == 0
    valid, fails = lab_results.validate(_kind_rows(), {"name": "labb", "mono_s": "quarantine"})
    assert valid["conversion"].to_list() == ["ngsp", "ifcc"]
    assert fails["rule"].to_list() == ["mono_s_not_converted"] * 2
    assert fails["_pos"].to_list() == [0, 1]


def test_mono_s_choice_is_checked():
    with pytest.raises(ValueError, match="convert"):
        labs.validate(rows(), mono_s="ngsp")
