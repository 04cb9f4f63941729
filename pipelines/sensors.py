"""Per contract: a sensor on its delivery folder, a schedule, and a sensor that reports runs
made with `utfall run` to Dagster.

Deliveries: the run key is the sha256 over the delivered files (each file's path and
content hash), so one delivery starts one run: the sensor's cursor holds the last hash it
requested and a repeat of the same files requests nothing. A delivery missing one of the
plan's sources waits (a run would only be rejected).

CLI runs: the domain core does not import Dagster (a validator re-runs it alone, and the CLI
starts in a second), so the CLI only records its runs in `ledger.runs` (origin `cli`), as
every run is. This sensor reads that table (read-only, never waiting for the lock) and
reports each newly published CLI run as a materialisation of every asset of the contract's
measure job, with the utfall run id: the Dagster view and the warehouse then agree, also
for runs made before Dagster was set up.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from dagster import (
    AssetKey,
    AssetMaterialization,
    DefaultSensorStatus,
    RunRequest,
    ScheduleDefinition,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from utfall import warehouse
from utfall.errors import UserError
from utfall.ingest import delivery_files
from utfall.pipelines.calendar import calendar
from utfall.plan import Plan

#: Read in blocks, so a large delivery never sits in memory whole.
_BLOCK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def delivery_hash(plan: Plan, folder: Path) -> tuple[str, list[str]]:
    """(sha256 over the plan's delivered files, their paths); UserError when a source has
    no file yet (the message names the source and folder)."""
    files: list[Path] = []
    for source in plan.sources:
        files += delivery_files(source, folder)
    control = plan.quality.get("control_file")
    if control and (folder / control).is_file():
        files.append(folder / control)
    lines = []
    for path in sorted(set(files)):
        rel = path.relative_to(folder).as_posix()
        lines.append(f"{rel}\t{file_sha256(path)}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest(), [x.split("\t")[0] for x in lines]


def delivery_sensor(plan: Plan, job: str, resource: str) -> SensorDefinition:
    contract = plan.contract_id

    @sensor(
        name=f"deliveries_{job.removeprefix('measure_')}",
        job_name=job,
        minimum_interval_seconds=60,
        required_resource_keys={resource},
        default_status=DefaultSensorStatus.STOPPED,
        description=f"Starts {job} once per new delivery in {contract}'s delivery folder "
        "(run key: sha256 over the delivered files).",
    )
    def _deliveries(context: SensorEvaluationContext):
        folder = getattr(context.resources, resource).deliveries(plan)
        try:
            digest, files = delivery_hash(plan, folder)
        except UserError as exc:
            return SkipReason(f"waiting for a complete delivery: {exc}")
        if context.cursor == digest:
            return SkipReason(f"delivery {digest[:12]} was already requested")
        context.update_cursor(digest)
        return RunRequest(
            run_key=digest,
            tags={"utfall/contract": contract, "utfall/delivery": digest},
        )

    return _deliveries


def measure_schedule(plan: Plan, job: str) -> ScheduleDefinition:
    """The periodic run: the plan's delivery.schedule_cron, by default its due times."""
    cal = calendar(plan)
    return ScheduleDefinition(
        name=f"periodic_{job.removeprefix('measure_')}",
        job_name=job,
        cron_schedule=cal.schedule_cron,
        execution_timezone=cal.timezone,
        tags={"utfall/contract": plan.contract_id, "utfall/trigger": "schedule"},
        description=f"Runs {job} on {cal.schedule_cron} ({cal.timezone}).",
    )


def cli_runs_sensor(plan: Plan, job: str, asset_keys: list[AssetKey]) -> SensorDefinition:
    contract = plan.contract_id

    @sensor(
        name=f"cli_runs_{job.removeprefix('measure_')}",
        minimum_interval_seconds=30,
        required_resource_keys={"duckdb"},
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Reports runs of {contract} made with `utfall run` (ledger.runs) as "
        "materialisations of the contract's assets.",
    )
    def _cli_runs(context: SensorEvaluationContext):
        since = context.cursor or ""
        db = context.resources.duckdb
        if not Path(db.database).exists():
            return SkipReason(f"no warehouse at {db.database} yet")
        try:
            con = db.read_only()
        except warehouse.WarehouseLocked:
            return SkipReason("the warehouse is busy (a run holds it); next tick")
        try:
            rel = con.sql(
                "SELECT run_id, plan_hash, code_version, started_at, finished_at, timings_json "
                "FROM ledger.runs WHERE contract_id = ? AND origin = 'cli' "
                "AND status IN ('published', 'superseded') AND finished_at IS NOT NULL "
                "AND strftime(finished_at, '%Y-%m-%dT%H:%M:%S.%f') > ? "
                "ORDER BY finished_at, run_id",
                params=[contract, since],
            )
            found = [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]
        finally:
            con.close()
        if not found:
            return SkipReason("no new published CLI run")
        events = [
            AssetMaterialization(
                asset_key=k,
                description=f"published by `utfall run` (run {r['run_id']})",
                metadata={
                    "utfall_run_id": r["run_id"],
                    "origin": "cli",
                    "plan_hash": r["plan_hash"],
                    "code_version": r["code_version"] or "",
                    "finished_at": _iso(r["finished_at"]),
                },
                tags={"utfall/contract": contract},
            )
            for r in found
            for k in asset_keys
        ]
        return SensorResult(asset_events=events, cursor=_iso(found[-1]["finished_at"]))

    return _cli_runs


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")


__all__ = ["cli_runs_sensor", "delivery_hash", "delivery_sensor", "measure_schedule"]
