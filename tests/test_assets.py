"""The Dagster assets, materialised against a DuckDB file in tmp_path."""

from __future__ import annotations

import json
import shutil

import pytest
from dagster import AssetKey, DagsterInstance, materialize
from dagster_duckdb import DuckDBResource

from utfall import warehouse
from utfall.cli import EXAMPLE_PLAN
from utfall.pipelines.definitions import build_assets, defs, job_name
from utfall.pipelines.resources import ContractResource, WarehouseResource, resource_key

CONTRACT = "demokommun-korttidssjuk-2025"
OPENED: list = []  # (path, connection) of each warehouse connection the `materialized` run opened


def _resources(plan, db, deliveries, reports) -> dict:
    return {
        "duckdb": WarehouseResource(database=str(db)),
        resource_key(plan): ContractResource(
            plan_path=str(EXAMPLE_PLAN),
            deliveries_dir=str(deliveries),
            reports_dir=str(reports),
        ),
    }


@pytest.fixture(scope="module")
def materialized(example_plan, deliveries, tmp_path_factory):
    """Every asset and check of the example materialised once into a fresh warehouse:
    (result, assets, checks, warehouse file, report folder). Tests that change the
    warehouse or the report copy them first."""
    from tests.conftest import TEST_KEY

    root = tmp_path_factory.mktemp("materialized")
    assets, checks = build_assets(example_plan)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UTFALL_PSEUDONYM_KEY", TEST_KEY)
        mp.setenv("UTFALL_CHROMIUM", "off")
        connect = warehouse.connect

        def counted(*args, **kwargs):
            OPENED.append((args[0], connect(*args, **kwargs)))
            return OPENED[-1][1]

        mp.setattr(warehouse, "connect", counted)
        result = materialize(
            [*assets, *checks],
            resources=_resources(example_plan, root / "w.duckdb", deliveries, root / "report"),
            instance=DagsterInstance.ephemeral(),
        )
    return result, assets, checks, root / "w.duckdb", root / "report"


def test_a_run_opens_the_warehouse_once_and_lets_go_at_its_end(materialized):
    """One writing connection per run, kept from the first asset to the last check, and
    closed when the run ends: another process can then open the file for writing."""
    import subprocess
    import sys

    import duckdb

    db = materialized[3]
    assert [path for path, _ in OPENED] == [str(db)]
    with pytest.raises(duckdb.ConnectionException):
        OPENED[0][1].execute("SELECT 1")  # closed by the run's end, not left to the GC
    code = "import duckdb, sys; duckdb.connect(sys.argv[1]).close()"
    done = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


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


def test_materialize_all(example_plan, materialized):
    result, assets, _, db, reports = materialized
    assert result.success
    checks_run = result.get_asset_check_evaluations()
    assert len(checks_run) == 6 and all(c.passed for c in checks_run)
    names = {c.check_name for c in checks_run}
    assert {"expectations_roster", "expectations_sick_leave", "reconciles"} <= names
    node = f"{CONTRACT.replace('-', '_')}__staging__sick_leave"
    events = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == AssetKey([CONTRACT, "staging", "sick_leave"])
    ]
    assert events, node
    meta = events[0].materialization.metadata
    assert meta["delivered"].value == meta["loaded"].value + meta["quarantined"].value
    report = json.loads((reports / "report.json").read_text())
    assert report["plan"]["hash"] == example_plan.hash
    con = warehouse.connect(db, read_only=True)
    try:
        assert warehouse.scalar(con, "SELECT count(*) FROM marts.payments_proposed") == 2
    finally:
        con.close()
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert AssetKey([CONTRACT, "reports", "validator_report"]) in materialized
    assert len(materialized) == len(assets)
    _check_metadata(result, assets)


def _check_metadata(result, assets) -> None:
    """Row counts everywhere; column schemas from the Pandera models; previews without
    identifiers; the effect chart as markdown."""
    by_key = {
        tuple(e.asset_key.path[1:]): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    for path, meta in by_key.items():
        if path != ("reports", "validator_report"):
            assert meta["dagster/row_count"].value >= 1, path
    specs = {tuple(k.path[1:]): a.specs_by_key[k] for a in assets for k in a.keys}
    staged = specs[("staging", "roster")].metadata["dagster/column_schema"].schema
    types = {c.name: c.type for c in staged.columns}
    assert types["employed_from"] == "Date" and types["employment_extent"] == "Int64"
    raw = specs[("raw", "sick_leave")].metadata["dagster/column_schema"].schema
    assert {c.name: c.type for c in raw.columns}["spell_start"] == "String"
    for path in (("staging", "roster"), ("staging", "sick_leave"), ("marts", "outcome_panel")):
        text = by_key[path]["preview"].value
        assert "person_id" not in text and "| " in text, path
    assert "| unit | rows |" in by_key[("staging", "roster")]["preview"].value
    chart = by_key[("marts", "effects")]["effect_chart"].value
    assert "### short_term_sick_days" in chart and "█" in chart and "CI" in chart


def test_every_plan_in_the_folder_gets_its_prefixed_graph_and_job(tmp_path, monkeypatch):
    import yaml

    from utfall.pipelines.definitions import build_definitions

    data = yaml.safe_load(EXAMPLE_PLAN.read_text(encoding="utf-8"))
    shutil.copy(EXAMPLE_PLAN, tmp_path / "a.yaml")
    data["contract"]["id"] = "andra-kommunen-2025"
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    monkeypatch.delenv("UTFALL_PLAN", raising=False)
    monkeypatch.setenv("UTFALL_PLANS", str(tmp_path))
    built = build_definitions()
    keys = {k.to_user_string() for k in built.resolve_asset_graph().get_all_asset_keys()}
    for contract in (CONTRACT, "andra-kommunen-2025"):
        assert f"{contract}/reports/validator_report" in keys
    assert built.resolve_job_def("measure_andra_kommunen_2025") is not None
    assert built.resolve_job_def(f"measure_{CONTRACT.replace('-', '_')}") is not None
    # Two plans claiming one contract id is an error, not a silent merge.
    shutil.copy(EXAMPLE_PLAN, tmp_path / "c.yaml")
    with pytest.raises(ValueError, match="both define contract"):
        build_definitions()


def test_rejected_delivery_in_dagster_publishes_nothing(
    example_plan, deliveries, materialized, tmp_path
):
    good, assets, checks, good_db, good_reports = materialized  # a good one first ...
    assert good.success
    db = tmp_path / "w.duckdb"
    shutil.copy(good_db, db)
    shutil.copytree(good_reports, tmp_path / "report")
    bad = tmp_path / "bad"
    shutil.copytree(deliveries, bad)
    lines = (bad / "sick_leave.csv").read_text().splitlines()
    (bad / "sick_leave.csv").write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    failed = materialize(  # ... then a delivery that data quality rejects
        [*assets, *checks],
        resources=_resources(example_plan, db, bad, tmp_path / "report"),
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not failed.success
    # Read through the resource: DuckDB refuses a second configuration of an open file.
    with DuckDBResource(database=str(db)).get_connection() as con:
        statuses = dict(con.sql("SELECT run_id, status FROM ledger.runs").fetchall())
        assert statuses[good.run_id] == "published"
        assert statuses[failed.run_id] == "rejected"
        assert con.sql("SELECT run_id FROM ledger.published").fetchall() == [(good.run_id,)]


def test_a_missing_or_empty_plans_folder_is_an_error(tmp_path, monkeypatch):
    from utfall.errors import UserError
    from utfall.pipelines.resources import plan_paths

    monkeypatch.delenv("UTFALL_PLAN", raising=False)
    monkeypatch.setenv("UTFALL_PLANS", str(tmp_path / "nope"))
    with pytest.raises(UserError, match="nope: no such plans folder"):
        plan_paths()
    monkeypatch.setenv("UTFALL_PLANS", str(tmp_path))
    with pytest.raises(UserError, match="no measurement plan"):
        plan_paths()
