"""The delivery ledger: every file ever received, with its fate, and what changed.

Each run records the files it read (`received`); publishing the run makes them
`accepted` and the contract's earlier accepted files `superseded`; a run that fails marks
its files `rejected`. Comparing a run's files with those of the published run tells a
changed re-delivery ("sick_leave.csv changed since run ...: rows 8117 -> 8067").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import polars as pl

from utfall.warehouse import insert_rows, read_table
from utfall.warehouse.runs import Run, now

LEDGER_SCHEMA = {
    "source": pl.String,
    "file": pl.String,
    "sha256": pl.String,
    "bytes": pl.Int64,
    "rows": pl.Int64,
}


def record_received(
    con: duckdb.DuckDBPyConnection, run: Run, source: str, files: Sequence[dict[str, Any]]
) -> None:
    """Add the files of one source to the ledger as `received` (inside the caller's
    transaction, or committed on their own: the ledger keeps rejected files too)."""
    frame = pl.DataFrame(list(files), schema=LEDGER_SCHEMA).with_columns(
        received_at=pl.lit(now()), status=pl.lit("received")
    )
    insert_rows(con, "ledger.deliveries", frame, {**run.scope, "source": source}, replace=False)


def changes_since_published(con: duckdb.DuckDBPyConnection, run: Run) -> list[dict[str, Any]]:
    """Files of `run` that differ from the contract's published run: changed, new, gone."""
    rows = read_table(
        con,
        """
        WITH cur AS (SELECT source, file, sha256, rows FROM ledger.deliveries WHERE run_id = $run),
        prev AS (SELECT run_id FROM ledger.published WHERE contract_id = $contract
                 AND run_id <> $run),
        pub AS (
            SELECT source, file, sha256, rows FROM ledger.deliveries
            WHERE run_id = (SELECT run_id FROM prev)
        )
        SELECT coalesce(cur.source, pub.source) AS source, coalesce(cur.file, pub.file) AS file,
               (SELECT run_id FROM prev) AS since_run, pub.rows AS rows_before,
               cur.rows AS rows_now,
               CASE WHEN pub.file IS NULL THEN 'new'
                    WHEN cur.file IS NULL THEN 'no longer delivered'
                    ELSE 'changed' END AS change
        FROM cur FULL OUTER JOIN pub USING (source, file)
        WHERE EXISTS (SELECT 1 FROM prev)
          AND (cur.file IS NULL OR pub.file IS NULL OR cur.sha256 <> pub.sha256)
        ORDER BY 1, 2
        """,
        {"run": run.run_id, "contract": run.contract_id},
    )
    return rows.to_dicts()


def describe_change(c: dict[str, Any]) -> str:
    if c["change"] == "changed":
        return (
            f"{c['source']}/{c['file']} changed since run {c['since_run']}: "
            f"rows {c['rows_before']} -> {c['rows_now']}"
        )
    if c["change"] == "new":
        return f"{c['source']}/{c['file']} is new since run {c['since_run']}"
    return f"{c['source']}/{c['file']} was in run {c['since_run']} and is no longer delivered"


def history_run(con: duckdb.DuckDBPyConnection, run: Run) -> str | None:
    """The latest accepted run (published or superseded) of the contract whose delivered
    files differ from `run`'s: what a delivery's volume is compared with.

    A re-run of the same files thus compares with the same history as the first run of
    them, so re-running gives the same report."""
    rows = con.sql(
        """
        WITH sig AS (
            SELECT run_id, string_agg(source || '/' || file || ':' || sha256, ';'
                                      ORDER BY source, file) AS files
            FROM ledger.deliveries WHERE contract_id = $contract GROUP BY run_id
        )
        SELECT r.run_id FROM ledger.runs r JOIN sig USING (run_id)
        WHERE r.contract_id = $contract AND r.status IN ('published', 'superseded')
          AND r.run_id <> $run
          AND sig.files IS DISTINCT FROM (SELECT files FROM sig WHERE run_id = $run)
        ORDER BY r.finished_at DESC, r.run_id LIMIT 1
        """,
        params={"contract": run.contract_id, "run": run.run_id},
    ).fetchall()
    return rows[0][0] if rows else None
