"""The unit_panel source kind: one row per unit and period, mapped by the plan's columns.

Rows are loaded or quarantined with their rule (duplicate unit-period, inconsistent
treatment, period outside the plan, bad weight...); the panel_value outcome becomes the
estimator's unit panel (numerator = value x weight, denominator = weight, treatment start);
the Dagster graph builds for plans with only a unit panel or only a person table.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.conftest import new_warehouse
from utfall import warehouse
from utfall.ingest import ingest_source
from utfall.metrics import panel_value
from utfall.pipeline import _scoped
from utfall.plan import Plan, load_plan
from utfall.recompute import estimator_frame
from utfall.validate import validate_source
from utfall.warehouse import runs

KEY = b"k" * 32

BASE_PLAN = {
    "plan_version": 1,
    "contract": {"id": "panel-test", "title": "Panel test", "instrument": "social_outcome_bond"},
    "parties": {
        "outcome_payer": "Region",
        "provider": "Provider AB",
        "investor": None,
        "independent_validator": "Validator",
    },
    "periods": {
        "baseline": {"start": "2022-01-01", "end": "2023-12-31"},
        "measurement": {"start": "2024-01-01", "end": "2024-12-31"},
        "frequency": "quarterly",
    },
    "sources": [
        {
            "name": "units",
            "kind": "unit_panel",
            "path": "panel.csv",
            "format": "csv",
            "columns": {
                "unit_id": "enhet",
                "period": "period",
                "treated": "behandlad",
                "weight": "vikt",
            },
            "treatment_values": {"treated": [1], "comparison": [0]},
            "outcome_columns": {"employment": "sysselsatta"},
            "max_quarantine_share": 1.0,
        }
    ],
    "outcomes": [
        {
            "id": "employment",
            "metric": "panel_value",
            "source": "units",
            "unit": "persons employed",
            "desired_direction": "increase",
            "parameters": {"column": "employment"},
        }
    ],
    "counterfactual": {
        "method": "did_2x2",
        "parameters": {"weight": "equal"},
        "confidence": 0.95,
        "seed": 11,
    },
    "payment": {
        "currency": "SEK",
        "outcome": "employment",
        "basis": "point_estimate",
        "rules": [{"kind": "fixed", "amount": "100.00"}],
    },
    "disclosure": {"min_cell_size": 5},
}

HEADER = ["enhet", "period", "behandlad", "vikt", "sysselsatta"]


def write_plan(tmp_path: Path, data: dict) -> Plan:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return load_plan(path)


def write_csv(path: Path, rows, header=HEADER) -> None:
    lines = [",".join(header)] + [",".join("" if v is None else str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def load(tmp_path: Path, plan: Plan, deliveries: Path):
    con = new_warehouse(tmp_path / "w.duckdb")
    run = runs.start(con, plan.contract_id, plan.hash)
    ingest_source(con, plan, run, "units", deliveries, KEY)
    return con, run, validate_source(con, plan, run, "units")


@pytest.fixture
def data() -> dict:
    return copy.deepcopy(BASE_PLAN)


GOOD = [
    ("A", "2023-01-01", "1", "2", "10"),
    ("A", "2024-01-01", "1", "2", "13"),
    ("B", "2023-01-01", "0", "1", "20"),
    ("B", "2024-01-01", "0", "1", "21"),
]


def test_panel_value_is_the_estimators_unit_panel(tmp_path, data):
    deliveries = tmp_path / "d"
    deliveries.mkdir()
    write_csv(deliveries / "panel.csv", GOOD)
    plan = write_plan(tmp_path, data)
    con, run, summary = load(tmp_path, plan, deliveries)
    assert (summary.loaded, summary.quarantined) == (4, 0)
    panel = panel_value(con, plan, run)
    assert panel.select(
        "unit_id",
        "group",
        "period_start",
        "phase",
        "numerator",
        "denominator",
        "value",
        "treatment_start",
    ).rows() == [
        ("A", "treated", dt.date(2023, 1, 1), "baseline", 20.0, 2.0, 10.0, dt.date(2024, 1, 1)),
        ("A", "treated", dt.date(2024, 1, 1), "measurement", 26.0, 2.0, 13.0, dt.date(2024, 1, 1)),
        ("B", "comparison", dt.date(2023, 1, 1), "baseline", 20.0, 1.0, 20.0, None),
        ("B", "comparison", dt.date(2024, 1, 1), "measurement", 21.0, 1.0, 21.0, None),
    ]
    assert panel["employees"].null_count() == 4  # aggregates, not persons
    con.close()


def test_treatment_start_column_instead_of_a_flag(tmp_path, data):
    source = data["sources"][0]
    source["columns"] = {"unit_id": "enhet", "period": "period", "treatment_start": "start"}
    del source["treatment_values"]
    rows = [
        ("A", "2023-01-01", "2024-01-01", "5"),
        ("A", "2024-01-01", "2024-01-01", "7"),
        ("B", "2023-01-01", "", "5"),
        ("B", "2024-01-01", "", "6"),
        ("C", "2023-01-01", "2024-13-01", "5"),  # invalid_treatment_start
        ("D", "2023-01-01", "2024-01-01", "5"),  # D's start differs between its rows:
        ("D", "2024-01-01", "2024-04-01", "5"),  #   both inconsistent_treatment
    ]
    deliveries = tmp_path / "d"
    deliveries.mkdir()
    write_csv(deliveries / "panel.csv", rows, header=["enhet", "period", "start", "sysselsatta"])
    plan = write_plan(tmp_path, data)
    con, run, summary = load(tmp_path, plan, deliveries)
    assert summary.by_rule == {"inconsistent_treatment": 2, "invalid_treatment_start": 1}
    panel = panel_value(con, plan, run)
    assert panel.select("unit_id", "group", "denominator", "treatment_start").rows() == [
        ("A", "treated", 1.0, dt.date(2024, 1, 1)),
        ("A", "treated", 1.0, dt.date(2024, 1, 1)),
        ("B", "comparison", 1.0, None),
        ("B", "comparison", 1.0, None),
    ]
    con.close()


BAD = [
    ("A", "2023-01-01", "1", "2", "10"),  # kept
    ("A", "2023-01-01", "1", "2", "10"),  # exact copy: duplicate_row
    ("B", "2023-01-01", "0", "1", "20"),  # B's 2023Q1 twice, values differ:
    ("B", "2023-01-01", "0", "1", "22"),  #   both duplicate_unit_period
    ("C", "2023-01-01", "0", "1", "20"),  # C is treated and not: all its rows
    ("C", "2024-01-01", "1", "1", "20"),  #   inconsistent_treatment
    ("D", "2021-01-01", "0", "1", "20"),  # period_outside_plan (before the baseline)
    ("D", "2023-02-30", "0", "1", "20"),  # invalid_period
    ("D", "2023-01-01", "2", "1", "20"),  # unknown_treatment
    ("D", "2023-04-01", "0", "0", "20"),  # invalid_weight (not above 0)
    ("D", "2023-07-01", "0", "x", "20"),  # invalid_weight (not a number)
    ("D", "2023-10-01", "0", "1", "many"),  # non_numeric_outcome
    ("D", "2024-01-01", "0", "1", ""),  # missing_employment
    ("", "2024-01-01", "0", "1", "3"),  # missing_unit_id
    ("D", "2024-04-01", "0", "1", "3"),  # kept
]


def test_quarantine_rules_and_reconciliation(tmp_path, data):
    deliveries = tmp_path / "d"
    deliveries.mkdir()
    write_csv(deliveries / "panel.csv", BAD)
    plan = write_plan(tmp_path, data)
    con, run, summary = load(tmp_path, plan, deliveries)
    assert summary.delivered == len(BAD) == summary.loaded + summary.quarantined
    rules = warehouse.read_table(
        con, "SELECT line, rule FROM work.quarantine_rows ORDER BY line"
    ).rows()
    assert rules == [
        (3, "duplicate_row"),
        (4, "duplicate_unit_period"),
        (5, "duplicate_unit_period"),
        (6, "inconsistent_treatment"),
        (7, "inconsistent_treatment"),
        (8, "period_outside_plan"),
        (9, "invalid_period"),
        (10, "unknown_treatment"),
        (11, "invalid_weight"),
        (12, "invalid_weight"),
        (13, "non_numeric_outcome"),
        (14, "missing_employment"),
        (15, "missing_unit_id"),
    ]
    staged = warehouse.read_table(
        con, "SELECT unit_id, period FROM work.staging_unit_panel ORDER BY _line"
    ).rows()
    assert staged == [("A", dt.date(2023, 1, 1)), ("D", dt.date(2024, 4, 1))]
    con.close()


def test_semicolon_decimal_comma_cp1252(tmp_path, data):
    data["sources"][0]["csv"] = {"delimiter": ";", "encoding": "cp1252", "decimal": ","}
    deliveries = tmp_path / "d"
    deliveries.mkdir()
    text = "enhet;period;behandlad;vikt;sysselsatta\r\nÖstra;2023-01-01;1;0,5;12,25\r\n"
    (deliveries / "panel.csv").write_bytes(text.encode("cp1252"))
    plan = write_plan(tmp_path, data)
    con, run, summary = load(tmp_path, plan, deliveries)
    assert summary.loaded == 1
    assert panel_value(con, plan, run).select("unit_id", "numerator", "denominator").rows() == [
        ("Östra", 6.125, 0.5)
    ]
    con.close()


def test_estimator_frame_of_an_empty_source_is_an_error(tmp_path, data):
    from utfall.errors import MeasurementError

    deliveries = tmp_path / "d"
    deliveries.mkdir()
    write_csv(deliveries / "panel.csv", [("A", "2021-01-01", "1", "1", "1")])
    plan = write_plan(tmp_path, data)
    con, run, summary = load(tmp_path, plan, deliveries)
    from utfall.metrics import build_outcome_panel

    build_outcome_panel(con, plan, run)
    with pytest.raises(MeasurementError, match="no valid unit-period row in its source"):
        panel = _scoped(con, "work.outcome_panel", run, "outcome, unit_id, period_start")
        estimator_frame(con, plan, run, "employment", "unit_panel", panel)
    con.close()


def test_dagster_graph_builds_for_a_panel_only_plan(tmp_path, data, monkeypatch):
    from utfall.pipelines.definitions import build_assets, build_definitions, job_name

    plan = write_plan(tmp_path, data)
    assets, checks = build_assets(plan)
    keys = {k.to_user_string() for a in assets for k in a.keys}
    assert keys == {
        "panel-test/raw/units",
        "panel-test/staging/units",
        "panel-test/staging/data_quality",
        "panel-test/marts/outcome_panel",
        "panel-test/marts/effects",
        "panel-test/marts/payments_proposed",
        "panel-test/reports/validator_report",
    }
    monkeypatch.setenv("UTFALL_PLAN", str(plan.path))
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    # and the quarter-partitioned outcome mart every plan's graph has
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == keys | {
        "panel-test/marts/quarter_outcomes"
    }
    assert defs.resolve_job_def(job_name(plan)).name == "measure_panel_test"


def test_dagster_graph_builds_for_a_person_only_plan(tmp_path, monkeypatch):
    """A person_table plan has no outcome panel: effects follow the data-quality stage."""
    from dagster import AssetKey

    from tests.test_sources_person import BASE_PLAN as PERSON_PLAN
    from utfall.pipelines.definitions import build_assets, build_definitions

    plan = write_plan(tmp_path, copy.deepcopy(PERSON_PLAN))
    assets, _ = build_assets(plan)
    keys = {k.to_user_string() for a in assets for k in a.keys}
    assert "person-test/marts/outcome_panel" not in keys
    monkeypatch.setenv("UTFALL_PLAN", str(plan.path))
    graph = build_definitions().resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == keys
    effects = next(a for a in assets if AssetKey(["person-test", "marts", "effects"]) in a.keys)
    deps = {d.to_user_string() for deps in effects.asset_deps.values() for d in deps}
    assert deps == {"person-test/staging/data_quality"}


def test_panel_rows_keep_their_weight_type(tmp_path, data):
    """Narrow Parquet types (int8 weight, float32 outcome) stage as Float64."""
    data["sources"][0]["format"] = "parquet"
    data["sources"][0]["path"] = "panel.parquet"
    deliveries = tmp_path / "d"
    deliveries.mkdir()
    pl.DataFrame(
        {
            "enhet": ["A", "A"],
            "period": [dt.date(2023, 1, 1), dt.date(2024, 1, 1)],
            "behandlad": pl.Series([1, 1], dtype=pl.Int8),
            "vikt": pl.Series([100, 120], dtype=pl.Int8),
            "sysselsatta": pl.Series([2.5, 0.1], dtype=pl.Float32),
        }
    ).write_parquet(deliveries / "panel.parquet")
    plan = write_plan(tmp_path, data)
    con, run, summary = load(tmp_path, plan, deliveries)
    assert summary.loaded == 2
    panel = panel_value(con, plan, run)
    assert panel["value"].to_list() == [2.5, 0.1]
    assert panel["numerator"].to_list() == [250.0, 12.0]  # 120 x 0.1, no int8 overflow
    con.close()


def test_parquet_timestamps_at_midnight_are_dates(tmp_path, data):
    """Exports often write dates as timestamps: at midnight they are read as dates; a
    timestamp with a time of day is not a period and is quarantined (invalid_period)."""
    data["sources"][0]["format"] = "parquet"
    data["sources"][0]["path"] = "panel.parquet"
    deliveries = tmp_path / "d"
    deliveries.mkdir()
    pl.DataFrame(
        {
            "enhet": ["A", "A", "B"],
            "period": [dt.datetime(2023, 1, 1), dt.datetime(2024, 1, 1), dt.datetime(2023, 1, 1)],
            "behandlad": [1, 1, 0],
            "vikt": [1, 1, 1],
            "sysselsatta": [1.0, 2.0, 3.0],
        }
    ).write_parquet(deliveries / "panel.parquet")
    plan = write_plan(tmp_path, data)
    con, run, summary = load(tmp_path, plan, deliveries)
    assert (summary.loaded, summary.quarantined) == (3, 0)
    con.close()
    pl.DataFrame(
        {
            "enhet": ["A"],
            "period": [dt.datetime(2023, 1, 1, 12, 30)],
            "behandlad": [1],
            "vikt": [1],
            "sysselsatta": [1.0],
        }
    ).write_parquet(deliveries / "panel.parquet")
    (tmp_path / "w.duckdb").unlink()
    con, run, summary = load(tmp_path, plan, deliveries)
    assert summary.by_rule == {"invalid_period": 1}
    con.close()


@pytest.mark.slow
def test_dagster_materialises_a_panel_only_plan(tmp_path):
    """The whole per-plan graph of a unit_panel plan, materialised: every asset and check
    passes and the run is published with its report (~20 s: Great Expectations)."""
    from dagster import DagsterInstance, materialize
    from dagster_duckdb import DuckDBResource

    from tests.test_e2e_methods import panel_plan, simulated_panel, write_case
    from utfall.pipelines.definitions import build_assets
    from utfall.pipelines.resources import ContractResource, resource_key

    plan_path, deliveries = write_case(tmp_path, simulated_panel(), panel_plan())
    plan = load_plan(plan_path)
    assets, checks = build_assets(plan)
    result = materialize(
        [*assets, *checks],
        resources={
            "duckdb": DuckDBResource(database=str(tmp_path / "w.duckdb")),
            resource_key(plan): ContractResource(
                plan_path=str(plan_path),
                deliveries_dir=str(deliveries),
                reports_dir=str(tmp_path / "report"),
            ),
        },
        instance=DagsterInstance.ephemeral(),
    )
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert {e.check_name for e in evaluations} == {
        "reconciles",
        "pandera_contract",
        "expectations_enheter",
    }
    assert all(e.passed for e in evaluations)
    assert (tmp_path / "report" / "report.json").exists()
    con = warehouse.connect(tmp_path / "w.duckdb", read_only=True)
    assert warehouse.scalar(con, "SELECT count(*) FROM restricted.outcome_panel") == 312
    con.close()


def test_report_takes_the_allow_list_and_the_warnings():
    """The report keeps only the diagnostics the estimator declares publishable (and of
    those no per-unit detail), and lists both kinds of warnings once each."""
    from utfall.report import effect_warnings, public_effect

    effect = {
        "outcome": "employment",
        "method": "did_2x2",
        "diagnostics": {
            "df": 12.0,
            "units": [{"unit_id": "A"}],  # declared, but per unit: never in a report
            "secret_per_person": [1, 2],  # not declared: never in a report
            "warnings": ["pre-trend differs", "shared"],
        },
        "warnings": ["shared", "few units"],
    }
    public = public_effect(effect)
    assert public["diagnostics"] == {"df": 12.0}  # its warnings join the effect's, once
    assert (
        public["warnings"]
        == effect_warnings(effect)
        == [
            "shared",
            "few units",
            "pre-trend differs",
        ]
    )


def test_report_series_of_a_unit_panel_is_not_suppressed(tmp_path, data):
    """Cells of a delivered panel are aggregates (employees empty): shown, not suppressed;
    cells of the sick-leave panel below the threshold still are."""
    from utfall.report import outcome_series

    plan = write_plan(tmp_path, data)
    row = {
        "outcome": "employment",
        "unit_id": "A",
        "group": "treated",
        "period_start": dt.date(2023, 1, 1),
        "period_end": dt.date(2023, 1, 1),
        "phase": "baseline",
        "numerator": 2.0,
        "denominator": 1.0,
        "value": 2.0,
    }
    panel = pl.DataFrame([{**row, "employees": None}], schema_overrides={"employees": pl.Int64})
    (cell,) = outcome_series(plan, panel, "employment")
    assert cell["suppressed"] is False and cell["value"] == 2.0 and cell["employees"] is None
    persons = pl.DataFrame([{**row, "employees": 3}])
    (cell,) = outcome_series(plan, persons, "employment")
    assert cell["suppressed"] is True and cell["value"] is None
