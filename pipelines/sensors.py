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
import json
import time
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


#: A file changed less than this many seconds ago may still be being written: wait.
SETTLE_SECONDS = 60.0


class StillArriving(UserError):
    """A delivered file changed moments ago (a copy may be in progress)."""


def delivered(plan: Plan, folder: Path) -> list[Path]:
    """The plan's files in `folder` (every source's, and the control file when named);
    UserError naming the source when one has no file yet."""
    files: list[Path] = []
    for source in plan.sources:
        files += delivery_files(source, folder)
    control = plan.quality.get("control_file")
    if control and (folder / control).is_file():
        files.append(folder / control)
    return sorted(set(files))


def delivery_hash(
    plan: Plan,
    folder: Path,
    known: dict[str, list] | None = None,
    settle: float = SETTLE_SECONDS,
) -> tuple[str, dict[str, list]]:
    """(sha256 over the lines "<path> TAB <file sha256>", the files' [size, mtime_ns,
    sha256] by path). A file whose size and mtime match `known` is not read again; one
    modified within `settle` seconds raises StillArriving."""
    known = known or {}
    now = time.time()
    stats: dict[str, list] = {}
    for path in delivered(plan, folder):
        rel = path.relative_to(folder).as_posix()
        st = path.stat()
        age = now - st.st_mtime
        if age < settle:
            raise StillArriving(
                f"{folder / rel} changed {age:.0f} s ago; waiting until it has been unchanged "
                f"for {settle:.0f} s"
            )
        prior = known.get(rel)
        if prior and prior[:2] == [st.st_size, st.st_mtime_ns]:
            stats[rel] = prior
        else:
            stats[rel] = [st.st_size, st.st_mtime_ns, file_sha256(path)]
    lines = "".join(f"{rel}\t{stats[rel][2]}\n" for rel in sorted(stats))
    return hashlib.sha256(lines.encode()).hexdigest(), stats


def delivery_sensor(
    plan: Plan, job: str, resource: str, settle: float = SETTLE_SECONDS
) -> SensorDefinition:
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
        cursor = _cursor(context.cursor)
        try:
            digest, stats = delivery_hash(plan, folder, cursor["files"], settle)
        except UserError as exc:
            return SkipReason(f"no run yet: {exc}")
        if cursor["requested"] == digest:
            context.update_cursor(json.dumps({"requested": digest, "files": stats}))
            return SkipReason(f"delivery {digest[:12]} was already requested")
        context.update_cursor(json.dumps({"requested": digest, "files": stats}))
        return RunRequest(
            run_key=digest,
            tags={"utfall/contract": contract, "utfall/delivery": digest},
        )

    return _deliveries


def _cursor(text: str | None) -> dict:
    """The delivery sensor's cursor: the last requested hash and the files' stats."""
    try:
        data = json.loads(text or "{}")
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    return {"requested": data.get("requested"), "files": data.get("files") or {}}


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
