"""The Dagster assets, materialised against a DuckDB file in tmp_path."""

from __future__ import annotations

import json

from dagster import AssetKey, DagsterInstance, materialize
from dagster_duckdb import DuckDBResource

from pipelines.definitions import build_assets, defs
from pipelines.resources import ContractResource
from utfall import warehouse
from utfall.cli import EXAMPLE_PLAN


def test_definitions_load():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {
        "raw/roster",
        "raw/sick_leave",
        "staging/roster",
        "staging/sick_leave",
        "marts/outcome_panel",
        "marts/effects",
        "marts/payments_proposed",
        "reports/validator_report",
    } <= keys
    assert defs.resolve_job_def("measure_contract") is not None


def test_materialize_all(example_plan, deliveries, tmp_path):
    assets, checks = build_assets(example_plan)
    db = tmp_path / "w.duckdb"
    result = materialize(
        [*assets, *checks],
        resources={
            "duckdb": DuckDBResource(database=str(db)),
            "contract": ContractResource(
                plan_path=str(EXAMPLE_PLAN),
                deliveries_dir=str(deliveries),
                reports_dir=str(tmp_path / "report"),
            ),
        },
        instance=DagsterInstance.ephemeral(),
    )
    assert result.success
    checks_run = result.get_asset_check_evaluations()
    assert len(checks_run) == 4 and all(c.passed for c in checks_run)
    meta = result.asset_materializations_for_node("staging__sick_leave")[0].metadata
    assert meta["delivered"].value == meta["loaded"].value + meta["quarantined"].value
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["plan"]["hash"] == example_plan.hash
    con = warehouse.connect(db, read_only=True)
    try:
        assert warehouse.scalar(con, "SELECT count(*) FROM marts.payments_proposed") == 2
    finally:
        con.close()
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert AssetKey(["reports", "validator_report"]) in materialized
    assert len(materialized) == len(assets)
