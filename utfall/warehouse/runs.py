"""Runs: recorded when they start, published atomically when complete, or marked failed.

A run's rows live in the `work` tables under its `run_id` from its first stage on, but
readers see them only once `publish` has switched the contract's `ledger.published` row
to the run, in one transaction that also retires the contract's older rows. A run that
fails is marked `failed` or `rejected` with its error; a run killed mid-way stays
`running` until the contract's next run marks it `abandoned`. Either way the published
state is the previous complete run, untouched.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import duckdb

import utfall
from utfall.errors import WarehouseError
from utfall.warehouse import layout, scalar, transaction

#: Work tables that hold rows of a run (all carry contract_id and run_id).
RUN_TABLES = tuple(layout.WORK_TABLES)


@dataclass(frozen=True)
class Run:
    """The identity a run's rows are written under."""

    run_id: str
    contract_id: str

    @property
    def scope(self) -> dict[str, str]:
        return {"contract_id": self.contract_id, "run_id": self.run_id}


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def new_run_id() -> str:
    return uuid.uuid4().hex


def start(
    con: duckdb.DuckDBPyConnection,
    contract_id: str,
    plan_hash: str,
    *,
    plan_file: str = "",
    key_fingerprint: str = "",
    origin: str = "cli",
    run_id: str | None = None,
) -> Run:
    """Record a new run as `running` (committed at once, so even a killed run is on file).

    Earlier runs of the contract still marked `running` are from processes that died
    (DuckDB admits one writer, and this process holds the lock): they become `abandoned`.
    """
    run = Run(run_id or new_run_id(), contract_id)
    with transaction(con):
        con.execute(
            "UPDATE ledger.runs SET status = 'abandoned', finished_at = ?, "
            "error = 'the process ended before the run finished' "
            "WHERE contract_id = ? AND status = 'running' AND run_id <> ?",
            [now(), contract_id, run.run_id],
        )
        exists = scalar(con, "SELECT count(*) FROM ledger.runs WHERE run_id = ?", [run.run_id])
        if not exists:
            con.execute(
                "INSERT INTO ledger.runs (run_id, contract_id, plan_hash, plan_file, "
                "key_fingerprint, code_version, origin, started_at, status, stage) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', 'start')",
                [
                    run.run_id,
                    contract_id,
                    plan_hash,
                    plan_file,
                    key_fingerprint,
                    utfall.__version__,
                    origin,
                    now(),
                ],
            )
    return run


def get(con: duckdb.DuckDBPyConnection, run_id: str) -> dict | None:
    rel = con.sql("SELECT * FROM ledger.runs WHERE run_id = ?", params=[run_id])
    rows = rel.fetchall()
    return dict(zip(rel.columns, rows[0], strict=True)) if rows else None


def require_running(con: duckdb.DuckDBPyConnection, run: Run, plan_hash: str) -> None:
    """A stage may write only for a running run of this contract made with this plan."""
    row = get(con, run.run_id)
    if row is None or row["contract_id"] != run.contract_id:
        raise WarehouseError(
            f"run {run.run_id} of {run.contract_id} is not in ledger.runs; start the run first"
        )
    if row["status"] != "running":
        raise WarehouseError(f"run {run.run_id} is {row['status']}, not running")
    if row["plan_hash"] != plan_hash:
        raise WarehouseError(
            f"run {run.run_id} started with plan {row['plan_hash']}, but the plan is now "
            f"{plan_hash}: the plan changed during the run; start a new run"
        )


def set_stage(con: duckdb.DuckDBPyConnection, run: Run, stage: str) -> None:
    con.execute("UPDATE ledger.runs SET stage = ? WHERE run_id = ?", [stage, run.run_id])


def enter_stage(con: duckdb.DuckDBPyConnection, run: Run, plan_hash: str, stage: str) -> None:
    """`require_running`, then `set_stage`, in one statement: the stage is set only on a
    running run of this contract and plan; otherwise `require_running` says why not.
    (One round trip instead of two for every stage of every run.)"""
    updated = con.execute(
        "UPDATE ledger.runs SET stage = ? WHERE run_id = ? AND contract_id = ? "
        "AND status = 'running' AND plan_hash = ?",
        [stage, run.run_id, run.contract_id, plan_hash],
    ).fetchall()[0][0]
    if not updated:
        require_running(con, run, plan_hash)


def record_timing(
    con: duckdb.DuckDBPyConnection, run: Run, stage: str, wall: float, cpu: float
) -> None:
    """Add a finished stage's wall and CPU seconds to the run's `timings_json`."""
    row = get(con, run.run_id) or {}
    timings = json.loads(row.get("timings_json") or "{}")
    timings[stage] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}
    con.execute(
        "UPDATE ledger.runs SET timings_json = ? WHERE run_id = ?",
        [json.dumps(timings), run.run_id],  # in stage order
    )


def published_run(con: duckdb.DuckDBPyConnection, contract_id: str) -> dict | None:
    """The contract's published run (its ledger.runs row), or None."""
    rel = con.sql(
        "SELECT r.* FROM ledger.published p JOIN ledger.runs r USING (run_id) "
        "WHERE p.contract_id = ?",
        params=[contract_id],
    )
    rows = rel.fetchall()
    return dict(zip(rel.columns, rows[0], strict=True)) if rows else None


def publish(
    con: duckdb.DuckDBPyConnection,
    run: Run,
    plan_hash: str,
    also: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
) -> None:
    """Make `run` the contract's published state, in one transaction (with `also`'s writes,
    e.g. the ledger entry of the publication).

    Also marks the run's deliveries accepted and earlier accepted ones superseded, and
    deletes the contract's rows of every other finished run (failed runs' rows stay
    inspectable in `quarantine.by_run` until this point).
    """
    with transaction(con):
        require_running(con, run, plan_hash)
        effects = scalar(
            con,
            "SELECT count(*) FROM work.effects WHERE contract_id = ? AND run_id = ? "
            "AND plan_hash = ?",
            [run.contract_id, run.run_id, plan_hash],
        )
        proposals = scalar(
            con,
            "SELECT count(*) FROM work.payment_proposal WHERE contract_id = ? AND run_id = ? "
            "AND plan_hash = ?",
            [run.contract_id, run.run_id, plan_hash],
        )
        if not effects or proposals != 1:
            raise WarehouseError(
                f"run {run.run_id} is incomplete (effects: {effects}, payment proposals: "
                f"{proposals} for plan {plan_hash}); nothing was published"
            )
        t = now()
        con.execute(
            "UPDATE ledger.runs SET status = 'superseded' WHERE run_id IN "
            "(SELECT run_id FROM ledger.published WHERE contract_id = ?)",
            [run.contract_id],
        )
        con.execute("DELETE FROM ledger.published WHERE contract_id = ?", [run.contract_id])
        con.execute(
            "INSERT INTO ledger.published VALUES (?, ?, ?, ?)",
            [run.contract_id, run.run_id, plan_hash, t],
        )
        con.execute(
            "UPDATE ledger.deliveries SET status = 'superseded' "
            "WHERE contract_id = ? AND status = 'accepted'",
            [run.contract_id],
        )
        con.execute(
            "UPDATE ledger.deliveries SET status = 'accepted' WHERE run_id = ?", [run.run_id]
        )
        con.execute(
            "UPDATE ledger.runs SET status = 'published', stage = 'published', "
            "finished_at = ? WHERE run_id = ?",
            [t, run.run_id],
        )
        for table in _with_stale_rows(con, run):
            con.execute(
                f"DELETE FROM {table} WHERE contract_id = ? AND run_id <> ? "
                f"AND run_id NOT IN {_RUNNING}",
                [run.contract_id, run.run_id],
            )
        if also is not None:
            also(con)


_RUNNING = "(SELECT run_id FROM ledger.runs WHERE status = 'running')"


def _with_stale_rows(con: duckdb.DuckDBPyConnection, run: Run) -> list[str]:
    """The RUN_TABLES holding rows `publish` deletes (the contract's, of no other running
    run), found in one query: a DELETE per table cost ~0.8 ms even with nothing to delete."""
    probe = " UNION ALL ".join(
        f"SELECT {i} AS i WHERE EXISTS (SELECT 1 FROM {t} WHERE contract_id = $contract_id "
        f"AND run_id <> $run_id AND run_id NOT IN {_RUNNING})"
        for i, t in enumerate(RUN_TABLES)
    )
    found = {i for (i,) in con.execute(probe, run.scope).fetchall()}
    return [t for i, t in enumerate(RUN_TABLES) if i in found]


def fail(con: duckdb.DuckDBPyConnection, run: Run, status: str, error: str) -> None:
    """Record how a run ended without publishing (`failed` or `rejected`)."""
    if con is None:  # pragma: no cover - defensive
        return
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass  # no transaction was open
    with transaction(con):
        con.execute(
            "UPDATE ledger.runs SET status = ?, finished_at = ?, error = ? "
            "WHERE run_id = ? AND status = 'running'",
            [status, now(), error[:2000], run.run_id],
        )
        con.execute(
            "UPDATE ledger.deliveries SET status = 'rejected' WHERE run_id = ? "
            "AND status = 'received'",
            [run.run_id],
        )
