"""Dagster around the core: groups and tags, delivery sensor, schedule, freshness against the
delivery calendar, partitions by measurement quarter, CLI runs reported to Dagster."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import re
import shutil
import time
from pathlib import Path

import pytest
import yaml
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    Definitions,
    RunRequest,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
    materialize,
)
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.definitions.freshness_evaluator import CronFreshnessPolicyEvaluator
from dagster._core.loader import LoadingContextForTest
from dagster._core.test_utils import freeze_time

from utfall import pipeline, warehouse
from utfall.assets.common import GROUPS
from utfall.assets.ingest import raw_asset
from utfall.assets.periods import TABLE, quarter_asset
from utfall.cli import simulate_deliveries
from utfall.paths import EXAMPLE_PLAN
from utfall.pipelines.calendar import CalendarError, calendar
from utfall.pipelines.definitions import build_assets, contract_definitions, job_name
from utfall.pipelines.resources import (
    ContractResource,
    WarehouseResource,
    default_resources,
    resource_key,
)
from utfall.pipelines.sensors import cli_runs_sensor, delivery_sensor, measure_schedule
from utfall.plan import load_plan

CONTRACT = "demokommun-korttidssjuk-2025"


def _plan_with(tmp_path: Path, **delivery):
    data = yaml.safe_load(EXAMPLE_PLAN.read_text(encoding="utf-8"))
    if delivery:
        data["delivery"] = delivery
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_plan(path)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A small contract measured by the CLI's core (`utfall run`): plan, warehouse, run id."""
    root = tmp_path_factory.mktemp("published")
    deliveries = root / "deliveries"
    simulate_deliveries(EXAMPLE_PLAN, deliveries, 1000, 0.12, 0.01, seed=3)
    plan = load_plan(EXAMPLE_PLAN)
    db = root / "w.duckdb"
    mp = pytest.MonkeyPatch()
    mp.setenv("UTFALL_PSEUDONYM_KEY", "test-key-not-secret-0123456789abcdef")
    try:
        result = pipeline.run(plan, db, deliveries, root / "report", progress=lambda _: None)
    finally:
        mp.undo()
    return plan, db, deliveries, result.run_id


def test_every_contract_is_grouped_by_stage_tagged_and_scheduled(example_plan):
    defs = Definitions.merge(
        contract_definitions(example_plan), Definitions(resources=default_resources([example_plan]))
    )
    graph = defs.resolve_asset_graph()
    groups = {graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert groups == set(GROUPS.values())
    for k in graph.get_all_asset_keys():
        assert k.path[0] == CONTRACT
    job = defs.resolve_job_def(job_name(example_plan))
    assert job.tags["utfall/contract"] == CONTRACT
    quarters_job = defs.resolve_job_def("quarters_demokommun_korttidssjuk_2025")
    assert quarters_job.tags["utfall/contract"] == CONTRACT
    assert quarters_job.partitions_def.get_partition_keys()[0] == "2025-01-01"
    assert {s.name for s in defs.sensors} == {
        "deliveries_demokommun_korttidssjuk_2025",
        "cli_runs_demokommun_korttidssjuk_2025",
    }
    raw = graph.get(AssetKey([CONTRACT, "raw", "roster"]))
    assert raw.freshness_policy.deadline_cron == "0 9 15 1,4,7,10 *"
    quarters = graph.get(AssetKey([CONTRACT, "marts", "quarter_outcomes"])).partitions_def
    assert quarters.get_partition_keys() == ["2025-01-01", "2025-04-01", "2025-07-01", "2025-10-01"]


def _expected_run_key(folder: Path, names: list[str]) -> str:
    lines = "".join(
        f"{n}\t{hashlib.sha256((folder / n).read_bytes()).hexdigest()}\n" for n in sorted(names)
    )
    return hashlib.sha256(lines.encode()).hexdigest()


def _age(folder: Path, seconds: float = 120) -> None:
    """Make the delivered files look settled (written `seconds` ago)."""
    t = time.time() - seconds
    for p in folder.iterdir():
        os.utime(p, (t, t))


def test_delivery_sensor_runs_a_delivery_once(example_plan, deliveries, tmp_path):
    folder = tmp_path / "incoming"
    resource = resource_key(example_plan)
    sensor = delivery_sensor(example_plan, job_name(example_plan), resource)
    resources = {
        resource: ContractResource(plan_path=str(EXAMPLE_PLAN), deliveries_dir=str(folder))
    }

    def tick(cursor):
        ctx = build_sensor_context(cursor=cursor, resources=resources)
        return sensor.evaluate_tick(ctx), ctx.cursor

    data, cursor = tick(None)  # no folder yet
    assert data.run_requests == [] and "does not exist" in data.skip_message
    folder.mkdir()
    shutil.copy(deliveries / "roster.csv", folder)
    _age(folder)
    data, cursor = tick(cursor)  # one source delivered, the other not yet: wait
    assert data.run_requests == [] and "sick_leave" in data.skip_message
    shutil.copy(deliveries / "sick_leave.csv", folder)
    data, cursor = tick(cursor)  # just written: a copy may still be in progress
    # "changed 0 s ago" on an idle machine; a second or two later under load
    assert data.run_requests == [] and re.search(r"changed \d s ago; waiting", data.skip_message)
    _age(folder)
    data, cursor = tick(cursor)
    assert len(data.run_requests) == 1
    request: RunRequest = data.run_requests[0]
    assert request.run_key == _expected_run_key(folder, ["roster.csv", "sick_leave.csv"])
    assert request.tags["utfall/contract"] == CONTRACT
    data, cursor = tick(cursor)  # the same files again: nothing
    assert data.run_requests == [] and "already requested" in data.skip_message
    os.utime(folder / "roster.csv")  # touched, same content: still the same delivery
    _age(folder)
    data, cursor = tick(cursor)
    assert data.run_requests == [] and "already requested" in data.skip_message
    (folder / "sick_leave.csv").write_bytes((folder / "sick_leave.csv").read_bytes()[:-40] + b"\n")
    _age(folder)
    data, cursor = tick(cursor)  # a changed file is a new delivery
    assert len(data.run_requests) == 1 and data.run_requests[0].run_key != request.run_key
    outside = tmp_path / "outside.csv"
    outside.write_bytes((folder / "sick_leave.csv").read_bytes())
    (folder / "sick_leave_extra.csv").symlink_to(outside)  # matches sick_leave*.csv
    _age(folder)
    data, _ = tick(cursor)  # a file leading outside the folder is refused, never hashed
    assert data.run_requests == [] and "outside the deliveries folder" in data.skip_message


def test_schedule_evaluates_with_the_plans_cron_or_the_default(example_plan, tmp_path):
    job = job_name(example_plan)
    default = measure_schedule(example_plan, job)
    assert default.cron_schedule == "0 9 15 1,4,7,10 *"
    assert default.execution_timezone == "Europe/Stockholm"
    weekly = measure_schedule(_plan_with(tmp_path, schedule_cron="0 6 * * 1"), job)
    when = dt.datetime(2025, 4, 14, 6, 0, tzinfo=dt.UTC)
    data = weekly.evaluate_tick(build_schedule_context(scheduled_execution_time=when))
    assert len(data.run_requests) == 1
    assert data.run_requests[0].tags["utfall/contract"] == CONTRACT
    assert weekly.cron_schedule == "0 6 * * 1"


@pytest.mark.parametrize(
    ("delivery", "message"),
    [
        ({"due_cron": "every quarter"}, "delivery.due_cron: 'every quarter' is not a cron"),
        ({"schedule_cron": "61 * * * *"}, "delivery.schedule_cron"),
        ({"timezone": "Mars/Olympus"}, "delivery.timezone: 'Mars/Olympus'"),
    ],
)
def test_a_bad_calendar_names_the_plan_key(tmp_path, delivery, message):
    with pytest.raises(CalendarError, match=message):
        calendar(_plan_with(tmp_path, **delivery))


def test_plan_schema_refuses_an_unknown_calendar_key(tmp_path):
    from utfall.errors import UserError

    with pytest.raises(UserError, match="due_kron"):
        _plan_with(tmp_path, due_kron="0 9 * * *")


def _freshness(instance, node, now: dt.datetime) -> FreshnessState:
    with freeze_time(now):
        return asyncio.run(
            CronFreshnessPolicyEvaluator().evaluate_freshness(LoadingContextForTest(instance), node)
        )


def test_a_late_delivery_shows_as_late(tmp_path):
    """Due daily at the next whole hour (UTC), within one day: loaded now it is fresh after
    the due time; two due times later with no new delivery it is late (FAIL)."""
    now = dt.datetime.now(dt.UTC)
    due = (now + dt.timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    plan = _plan_with(tmp_path, due_cron=f"0 {due.hour} * * *", window_days=1, timezone="UTC")
    asset = raw_asset(plan, plan.source("roster"), resource_key(plan))
    defs = Definitions(assets=[asset], resources=default_resources([plan]))
    node = defs.resolve_asset_graph().get(asset.key)
    instance = DagsterInstance.ephemeral()
    assert _freshness(instance, node, due + dt.timedelta(minutes=5)) == FreshnessState.UNKNOWN
    instance.report_runless_asset_event(AssetMaterialization(asset_key=asset.key))
    assert _freshness(instance, node, due + dt.timedelta(minutes=5)) == FreshnessState.PASS
    late = due + dt.timedelta(days=2, minutes=5)
    assert _freshness(instance, node, late) == FreshnessState.FAIL


def _quarter_rows(db: Path) -> dict:
    con = warehouse.connect(db, read_only=True)
    try:
        rows = con.sql(
            f"SELECT period_start, outcome, unit_group, employees, value, suppressed, run_id "
            f"FROM {TABLE} ORDER BY ALL"
        ).fetchall()
        kind = con.sql(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = 'marts' "
            "AND table_name = 'quarter_outcomes' AND column_name = 'period_start'"
        ).fetchall()
        undescribed = con.sql(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'marts' "
            "AND table_name = 'quarter_outcomes' AND (comment IS NULL OR comment = '')"
        ).fetchall()
    finally:
        con.close()
    return {"rows": rows, "type": kind[0][0], "undescribed": undescribed}


def test_one_quarter_rematerialises_alone(published):
    plan, db, _, run_id = published
    asset = quarter_asset(plan, resource_key(plan))
    resources = {
        "duckdb": WarehouseResource(database=str(db)),
        resource_key(plan): ContractResource(plan_path=str(EXAMPLE_PLAN)),
    }
    for q in asset.partitions_def.get_partition_keys():
        assert materialize([asset], partition_key=q, resources=resources).success
    before = _quarter_rows(db)
    assert before["type"] == "DATE"
    assert before["undescribed"] == []
    # 4 quarters x 2 outcomes x 2 groups, all from the published run
    assert len(before["rows"]) == 16 and {r[-1] for r in before["rows"]} == {run_id}
    con = warehouse.connect(db)
    try:  # damage Q2 and mark Q3: only Q2 may change back
        con.execute(f"UPDATE {TABLE} SET value = -1 WHERE period_start = DATE '2025-04-01'")
        con.execute(f"UPDATE {TABLE} SET value = 999 WHERE period_start = DATE '2025-07-01'")
    finally:
        con.close()
    result = materialize([asset], partition_key="2025-04-01", resources=resources)
    assert result.success
    (event,) = result.get_asset_materialization_events()
    assert event.partition == "2025-04-01"
    assert event.materialization.metadata["dagster/row_count"].value == 4
    after = _quarter_rows(db)["rows"]
    q = {
        str(d): [r for r in after if str(r[0]) == d]
        for d in ("2025-01-01", "2025-04-01", "2025-07-01", "2025-10-01")
    }
    assert q["2025-04-01"] == [r for r in before["rows"] if str(r[0]) == "2025-04-01"]
    assert all(r[4] == 999 for r in q["2025-07-01"])  # untouched
    assert q["2025-01-01"] == [r for r in before["rows"] if str(r[0]) == "2025-01-01"]
    assert len(after) == 16


def test_a_quarter_without_a_published_run_says_so(tmp_path, example_plan):
    asset = quarter_asset(example_plan, resource_key(example_plan))
    result = materialize(
        [asset],
        partition_key="2025-01-01",
        resources={
            "duckdb": WarehouseResource(database=str(tmp_path / "empty.duckdb")),
            resource_key(example_plan): ContractResource(plan_path=str(EXAMPLE_PLAN)),
        },
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "has no published run" in failure.step_failure_data.error.to_string()


def test_cli_runs_are_reported_to_dagster_once(published):
    plan, db, _, run_id = published
    assets, _ = build_assets(plan)
    keys = [k for a in assets for k in a.keys]
    sensor = cli_runs_sensor(plan, job_name(plan), keys)
    resources = {"duckdb": WarehouseResource(database=str(db))}
    instance = DagsterInstance.ephemeral()

    def tick(**kwargs):
        # As Dagster's daemon evaluates a sensor: inside the context's scope (the warehouse
        # resource holds a run's connection until teardown, so it is a context resource).
        with build_sensor_context(**kwargs) as ctx:
            return sensor.evaluate_tick(ctx)

    data = tick(resources=resources, instance=instance)
    events = data.asset_events
    for e in events:  # as the daemon records them: the asset graph then shows the CLI run
        instance.report_runless_asset_event(e)
    latest = instance.get_latest_materialization_event(keys[-1]).asset_materialization
    assert latest.metadata["utfall_run_id"].value == run_id
    assert {e.asset_key for e in events} == set(keys) and len(events) == len(keys)
    assert {e.metadata["utfall_run_id"].value for e in events} == {run_id}
    assert {e.metadata["origin"].value for e in events} == {"cli"}
    again = tick(resources=resources, cursor=data.cursor)
    assert not again.asset_events and "no new published CLI run" in again.skip_message
    missing = {"duckdb": WarehouseResource(database=str(db.with_name("none.duckdb")))}
    none = tick(resources=missing)
    assert isinstance(none.skip_message, str) and "no warehouse" in none.skip_message


def test_skip_reason_type_is_dagsters():
    assert SkipReason("x").skip_message == "x"
