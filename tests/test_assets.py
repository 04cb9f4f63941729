"""The Dagster assets, materialised against a DuckDB file in tmp_path."""

from __future__ import annotations

import json

from dagster import AssetKey, DagsterInstance, materialize
from dagster_duckdb import DuckDBResource

from pipelines.definitions import build_assets, defs, job_name
from pipelines.resources import ContractResource, resource_key
from utfall import warehouse
from utfall.cli import EXAMPLE_PLAN

CONTRACT = "demokommun-korttidssjuk-2025"


def test_definitions_load(example_plan):
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {
        f"{CONTRACT}/{k}"
        for k in (
            "raw/roster",
            "raw/sick_leave",
            "staging/roster",
            "staging/sick_leave",
            "staging/data_quality",
            "marts/outcome_panel",
            "marts/effects",
            "marts/payments_proposed",
            "reports/validator_report",
        )
    } <= keys
    assert defs.resolve_job_def(job_name(example_plan)) is not None


def test_materialize_all(example_plan, deliveries, tmp_path):
    assets, checks = build_assets(example_plan)
    db = tmp_path / "w.duckdb"
    result = materialize(
        [*assets, *checks],
        resources={
            "duckdb": DuckDBResource(database=str(db)),
            resource_key(example_plan): ContractResource(
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
    node = f"{CONTRACT.replace('-', '_')}__staging__sick_leave"
    events = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == AssetKey([CONTRACT, "staging", "sick_leave"])
    ]
    assert events, node
    meta = events[0].materialization.metadata
    assert meta["delivered"].value == meta["loaded"].value + meta["quarantined"].value
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["plan"]["hash"] == example_plan.hash
    con = warehouse.connect(db, read_only=True)
    try:
        assert warehouse.scalar(con, "SELECT count(*) FROM marts.payments_proposed") == 2
    finally:
        con.close()
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert AssetKey([CONTRACT, "reports", "validator_report"]) in materialized
    assert len(materialized) == len(assets)
