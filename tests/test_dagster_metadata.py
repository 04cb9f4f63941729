"""Previews suppress small cells and never show identifiers; the quality check's severity
follows the plan's (block -> ERROR, warn -> WARN)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from dagster import AssetCheckSeverity

from utfall.assets.metadata import cell, column_schema, markdown_table, panel_preview
from utfall.assets.validate import check_severity


def test_small_cells_are_suppressed():
    assert cell(4, 5) == "<5" and cell(5, 5) == "5" and cell(0, 5) == "<5"


def test_a_preview_refuses_identifier_columns():
    with pytest.raises(ValueError, match="person_id"):
        markdown_table([{"person_id": "abc"}], ["person_id"])
    assert markdown_table([{"a": "x|y"}], ["a"]) == "| a |\n|---|\n| x\\|y |\n"


def test_panel_preview_hides_a_small_group_value():
    q = dt.date(2025, 1, 1)
    panel = pl.DataFrame(
        {
            "outcome": ["o", "o", "o"],
            "unit_id": ["A", "B", "C"],
            "group": ["treated", "treated", "comparison"],
            "period_start": [q, q, q],
            "phase": ["measurement"] * 3,
            "employees": [2, 1, 40],
            "numerator": [3.0, 1.0, 20.0],
            "denominator": [2.0, 1.0, 40.0],
        }
    )
    text = panel_preview(panel, 5).value
    treated = next(line for line in text.splitlines() if "| treated |" in line)
    comparison = next(line for line in text.splitlines() if "| comparison |" in line)
    assert treated.endswith("| <5 |  |")  # 3 employees: count and value suppressed
    assert comparison.endswith("| 40 | 0.5 |")


def test_column_schema_comes_from_the_source_model():
    schema = column_schema("sick_leave_spells", typed=True).schema
    cols = {c.name: c for c in schema.columns}
    assert cols["spell_start"].type == "Date" and cols["extent"].type == "Int64"
    assert cols["person_id"].constraints.nullable is False
    assert {"source", "_file", "_line"} <= set(cols)


@pytest.mark.parametrize(
    ("rows", "passed", "severity"),
    [
        ([], True, AssetCheckSeverity.WARN),
        ([{"severity": "warn", "success": False}], False, AssetCheckSeverity.WARN),
        ([{"severity": "block", "success": False}], False, AssetCheckSeverity.ERROR),
        (
            [{"severity": "warn", "success": False}, {"severity": "block", "success": True}],
            False,
            AssetCheckSeverity.WARN,
        ),
    ],
)
def test_check_severity_follows_the_plan(rows, passed, severity):
    assert check_severity(rows) == (passed, severity)
