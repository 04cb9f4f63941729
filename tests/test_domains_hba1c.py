"""HbA1c lab rows: IFCC kept, NGSP and Mono-S % converted (hand-computed), the 2010-09-01
Swedish cut-over, unit spellings, decimal comma, the hard and warning ranges at their bounds,
and every quarantine rule."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl
import pytest

from utfall.domains import hba1c

D = dt.date


def rows(*items, value_type=pl.Float64):
    return pl.DataFrame(
        [
            {"person_id": f"p{i}", "sample_date": d, "analyte": a, "value": v, "unit": u}
            for i, (d, a, v, u) in enumerate(items)
        ],
        schema={
            "person_id": pl.Utf8,
            "sample_date": pl.Date,
            "analyte": pl.Utf8,
            "value": value_type,
            "unit": pl.Utf8,
        },
    )


def one(d, v, u, **kw):
    valid, bad = hba1c.validate(rows((d, "HbA1c", v, u)), **kw)
    return valid.to_dicts(), bad.to_dicts()


def test_the_equations_by_hand():
    # 10.929 x (6.5 - 2.152) = 10.929 x 4.348 = 47.519292
    assert hba1c.ngsp_to_ifcc(Decimal("6.5")) == Decimal("47.519292")
    # 10.11 x 5.5 - 8.9 = 55.605 - 8.9 = 46.705
    assert hba1c.mono_s_to_ifcc(Decimal("5.5")) == Decimal("46.705")


def test_the_unverified_swedish_variant_differs_little_at_the_thresholds():
    # the docstring's claim: |(10.45 x - 10.62) - (10.11 x - 8.9)| < 0.22 for x in 5.0..5.7 %
    for tenth in range(50, 58):
        x = Decimal(tenth) / 10
        assert abs(Decimal("10.45") * x - Decimal("10.62") - hba1c.mono_s_to_ifcc(x)) < Decimal(
            "0.22"
        )
    assert Decimal("10.45") * 7 - Decimal("10.62") - hba1c.mono_s_to_ifcc(Decimal(7)) == Decimal(
        "0.66"
    )


@pytest.mark.parametrize(
    ("date", "value", "unit", "conversion", "mmol"),
    [
        (D(2020, 1, 1), 44.0, "mmol/mol", "ifcc", 44.0),
        (D(2020, 1, 1), 44.4, "mmol/mol", "ifcc", 44.4),  # IFCC kept as delivered
        (D(2020, 1, 1), 6.5, "%", "ngsp", 48.0),  # 47.519 -> 48 (half up to whole)
        (D(2020, 1, 1), 6.5, "procent", "ngsp", 48.0),
        (D(2020, 1, 1), 5.7, "% NGSP", "ngsp", 39.0),  # 10.929 x 3.548 = 38.776 -> 39
        (D(2010, 9, 1), 5.5, "%", "ngsp", 37.0),  # cut-over day: 10.929 x 3.348 = 36.590
        (D(2010, 8, 31), 5.5, "%", "mono_s", 47.0),  # last Mono-S day: 46.705 -> 47
        (D(2009, 5, 1), 5.5, "Procent", "mono_s", 47.0),
        (D(2009, 5, 1), 5.5, "% NGSP", "ngsp", 37.0),  # a named scale wins over the date
        (D(2012, 5, 1), 5.5, "% Mono-S", "mono_s", 47.0),
        (D(2009, 5, 1), 4.85, "%", "mono_s", 40.0),  # 10.11 x 4.85 - 8.9 = 40.1335 -> 40
        (D(2009, 5, 1), 5.85, "%", "mono_s", 50.0),  # 59.1435 - 8.9 = 50.2435 -> 50
    ],
)
def test_conversions(date, value, unit, conversion, mmol):
    valid, bad = one(date, value, unit)
    assert bad == []
    assert valid[0]["conversion"] == conversion
    assert valid[0]["hba1c_mmol_mol"] == mmol
    assert valid[0]["value_delivered"] == value and valid[0]["unit_delivered"] == unit


def test_mono_s_is_not_converted_as_ngsp():
    # as NGSP 5.5 % would be 37; as Mono-S it is 47: ten mmol/mol apart, across the 42 line
    (before,), _ = one(D(2009, 5, 1), 5.5, "%")
    (after,), _ = one(D(2011, 5, 1), 5.5, "%")
    assert (before["hba1c_mmol_mol"], after["hba1c_mmol_mol"]) == (47.0, 37.0)


def test_decimal_comma_text_and_mono_s_quarantine():
    frame = rows(
        (D(2012, 1, 1), "HbA1c", "6,5", "%"),
        (D(2012, 1, 1), "hba1c", " 44 ", "mmol/mol"),
        (D(2012, 1, 1), "HbA1c", "6.5", "percent"),
        value_type=pl.Utf8,
    )
    valid, bad = hba1c.validate(frame)
    assert valid["hba1c_mmol_mol"].to_list() == [48.0, 44.0, 48.0]
    assert bad.height == 0
    valid, bad = hba1c.validate(rows((D(2009, 1, 1), "HbA1c", 5.5, "%")), mono_s="quarantine")
    assert valid.height == 0 and bad["rule"].to_list() == ["mono_s_not_converted"]


@pytest.mark.parametrize(
    ("value", "unit", "rule", "warning"),
    [
        (15.0, "mmol/mol", None, "outside_20_150"),
        (14.9, "mmol/mol", "out_of_range", None),
        (200.0, "mmol/mol", None, "outside_20_150"),
        (200.1, "mmol/mol", "out_of_range", None),
        (20.0, "mmol/mol", None, None),
        (19.9, "mmol/mol", None, "outside_20_150"),
        (150.0, "mmol/mol", None, None),
        (150.5, "mmol/mol", None, "outside_20_150"),
        (2.0, "%", "out_of_range", None),  # 10.929 x -0.152 = -1.66 -> -2 mmol/mol
        (20.4, "%", None, "outside_20_150"),  # 10.929 x 18.248 = 199.43 -> 199
        (20.5, "%", "out_of_range", None),  # 10.929 x 18.348 = 200.52 -> 201
    ],
)
def test_ranges_at_the_bounds(value, unit, rule, warning):
    valid, bad = one(D(2020, 1, 1), value, unit)
    if rule is None:
        assert bad == [] and valid[0]["warning"] == warning
    else:
        assert valid == [] and bad[0]["rule"] == rule


def test_every_quarantine_rule_keeps_the_row():
    frame = rows(
        (D(2020, 1, 1), "HbA1c", "44", "mmol/mol"),
        (D(2020, 1, 1), "P-glukos", "6,1", "mmol/L"),
        (D(2020, 1, 1), "HbA1c", "abc", "mmol/mol"),
        (D(2020, 1, 1), "HbA1c", "44", "mg/dL"),
        (None, "HbA1c", "44", "mmol/mol"),
        (D(2020, 1, 1), "HbA1c", None, "mmol/mol"),
        (D(2020, 1, 1), "HbA1c", "300", "mmol/mol"),
        (D(2020, 1, 1), "HbA1c", "44", "mmol/mol"),  # p7: same date and value as p0, kept
        (D(2020, 1, 1), "HbA1c", "45", "mmol/mol"),
        value_type=pl.Utf8,
    )
    frame = pl.concat([frame, frame.slice(8, 1)])  # an exact copy of p8
    valid, bad = hba1c.validate(frame)
    assert valid.height + bad.height == frame.height
    assert valid["person_id"].to_list() == ["p0", "p7", "p8"]
    assert bad["rule"].to_list() == [
        "not_hba1c",
        "value_not_a_number",
        "unknown_unit",
        "missing_field",
        "missing_field",
        "out_of_range",
        "duplicate_row",
    ]
    assert bad["detail"].to_list()[3:5] == ["sample_date", "value"]
    assert bad["value"].to_list()[0] == "6,1"


def test_missing_column_is_an_error():
    with pytest.raises(ValueError, match="unit"):
        hba1c.validate(rows((D(2020, 1, 1), "HbA1c", 44.0, "mmol/mol")).drop("unit"))
