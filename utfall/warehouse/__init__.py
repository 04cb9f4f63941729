"""The DuckDB warehouse: where it lives, connecting with clear errors, verified writes.

Layers are schemas (see `layout`): `work` holds every run's rows tagged by contract and
run; `raw`, `staging`, `quarantine` and `marts` are views of each contract's published
run; `ledger` holds runs, publications and the delivery history. Every write is checked
against the stored row count (a dependency's write is not trusted), and a run becomes
visible only when it is published (see `runs`).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from utfall import paths
from utfall.errors import WarehouseError
from utfall.warehouse import layout

WAREHOUSE_ENV = paths.WAREHOUSE_ENV
#: The source checkout (for files such as requirements.lock); never where data goes: data
#: paths come from `utfall.paths` (the working directory or $UTFALL_HOME).
REPO_ROOT = Path(__file__).resolve().parent.parent.parent
#: Seconds to wait for another process's lock on the warehouse before giving up.
LOCK_TIMEOUT_ENV = "UTFALL_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 60.0
#: Seconds between attempts while waiting (one log line per attempt).
LOCK_POLL = 5.0


class WarehouseLocked(WarehouseError):
    """Another process holds the warehouse file's lock (DuckDB admits one writer)."""


class WriteVerificationError(RuntimeError):
    """The stored row count differs from what was written: a storage bug, never ignored."""


def default_path() -> Path:
    """$UTFALL_WAREHOUSE, else data/warehouse.duckdb under $UTFALL_HOME or the working folder."""
    return paths.warehouse()


#: Words in DuckDB's errors for a file that is not (or no longer) a whole database.
_DAMAGE_WORDS = ("read enough bytes", "not a valid duckdb", "corrupt", "checksum", "magic")


def _open(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        text = str(exc)
        if "lock" in text.lower():
            raise WarehouseLocked(
                f"{path}: the warehouse is open for writing in another process; close it "
                f"(or wait for its run to finish) and try again"
            ) from None
        if not any(w in text.lower() for w in _DAMAGE_WORDS):
            raise WarehouseError(
                f"{path}: cannot open the warehouse: {text.splitlines()[0]}"
            ) from None
        first = text.splitlines()[0]
        raise WarehouseError(
            f"{path}: not a usable DuckDB warehouse file (damaged, truncated or another "
            f"format): {first}. Move it aside; a new warehouse is created on the next run"
        ) from None
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, duckdb.ConnectionException):
            raise WarehouseError(f"{path}: cannot open the warehouse: {first}") from None
        raise WarehouseError(
            f"{path}: not a usable DuckDB warehouse file (damaged, truncated or another "
            f"format): {first}. Move it aside; a new warehouse is created on the next run"
        ) from None


def _check_version(con: duckdb.DuckDBPyConnection, path: Path) -> bool:
    """True when the layout exists at the current version; error for another layout."""
    has_meta = scalar(
        con,
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = 'ledger' AND table_name = 'meta'",
    )
    if has_meta:
        rows = con.sql("SELECT value FROM ledger.meta WHERE key = 'schema_version'").fetchall()
        version = rows[0][0] if rows else None
        if version != layout.SCHEMA_VERSION:
            raise WarehouseError(
                f"{path}: warehouse layout version {version}, this utfall uses "
                f"{layout.SCHEMA_VERSION}; `utfall warehouse upgrade` carries its ledger "
                "(runs, decisions, payments) into a new one, then re-run to publish again"
            )
        return True
    others = scalar(
        con,
        "SELECT count(*) FROM information_schema.tables WHERE table_schema NOT IN "
        "('main', 'information_schema', 'pg_catalog')",
    )
    if others:
        raise WarehouseError(
            f"{path}: this warehouse was made by an earlier utfall layout (no ledger.meta); "
            "move the file aside and re-run to rebuild it from the deliveries"
        )
    return False


def lock_timeout() -> float:
    """$UTFALL_LOCK_TIMEOUT seconds (default 60): how long a run waits for the lock."""
    text = os.environ.get(LOCK_TIMEOUT_ENV)
    if not text:
        return DEFAULT_LOCK_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise WarehouseError(
            f"${LOCK_TIMEOUT_ENV}={text!r}: give the seconds to wait for the warehouse lock "
            "as a number >= 0"
        )
    return value


def _open_waiting(
    path: Path, read_only: bool, timeout: float, on_wait: Callable[[str], None]
) -> duckdb.DuckDBPyConnection:
    """Open `path`, waiting up to `timeout` s while another process holds its lock.

    DuckDB admits one writing process, and a reader cannot open a file a writer holds: a
    run started while another runs (or an analyst has the file open) waits, saying so once
    per attempt, then stops with an error naming the file and the time waited."""
    started = time.monotonic()
    while True:
        try:
            return _open(path, read_only)
        except WarehouseLocked:
            waited = time.monotonic() - started
            if waited >= timeout:
                raise WarehouseLocked(
                    f"{path}: the warehouse is open for writing in another process; waited "
                    f"{waited:.0f} s for its lock (timeout {timeout:g} s, ${LOCK_TIMEOUT_ENV}); "
                    "close the other connection or let its run finish, then try again"
                ) from None
            pause = min(LOCK_POLL, timeout - waited)
            on_wait(
                f"{path}: the warehouse is locked by another process; waiting "
                f"(waited {waited:.0f} s of {timeout:g} s, next try in {pause:.0f} s)"
            )
            time.sleep(pause)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def connect(
    path: str | Path | None = None,
    read_only: bool = False,
    *,
    timeout: float | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse; a writer creates the layout when it is new.

    While another process holds the file's lock, wait up to `timeout` seconds (default
    $UTFALL_LOCK_TIMEOUT or 60), reporting each wait to `on_wait` (default: stderr)."""
    path = Path(path) if path else default_path()
    if read_only and not path.exists():
        raise WarehouseError(f"{path}: no warehouse here yet; run a measurement first")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    wait = lock_timeout() if timeout is None else timeout
    con = _open_waiting(path, read_only, wait, on_wait or _stderr)
    try:
        con.execute("SET python_enable_replacements=false")
        current = _check_version(con, path)
        if not read_only and not current:
            prepare(con)
    except BaseException:
        con.close()
        raise
    return con


def prepare(
    con: duckdb.DuckDBPyConnection, path: str | Path = "the warehouse"
) -> duckdb.DuckDBPyConnection:
    """Session settings and the layout (refusing another layout's file); safe to call on
    every writing connection, e.g. one that Dagster's DuckDBResource opened."""
    con.execute("SET python_enable_replacements=false")
    if _check_version(con, Path(path)):
        return con
    with transaction(con):
        layout.create(con)
        con.execute("DELETE FROM ledger.meta WHERE key = 'schema_version'")
        con.execute("INSERT INTO ledger.meta VALUES ('schema_version', ?)", [layout.SCHEMA_VERSION])
    return con


def insert_rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    df: pl.DataFrame,
    scope: Mapping[str, Any],
    *,
    replace: bool = True,
) -> int:
    """Write `df` into `table` as the rows of `scope` (e.g. contract, run, source).

    With `replace`, the scope's earlier rows are deleted first. The scope's columns are
    added to `df`. Afterwards the rows stored under `scope` are counted: any difference
    from what was written is a `WriteVerificationError`. Call inside a transaction.
    """
    frame = df.with_columns(
        [
            pl.lit(v, dtype=pl.String if isinstance(v, str) else None).alias(k)
            for k, v in scope.items()
        ]
    )
    where = " AND ".join(f'"{k}" = ?' for k in scope)
    params = list(scope.values())
    before = 0 if replace else scalar(con, f"SELECT count(*) FROM {table} WHERE {where}", params)
    if replace:
        con.execute(f"DELETE FROM {table} WHERE {where}", params)
    con.register("_utfall_insert", frame.to_arrow())
    try:
        cols = ", ".join(f'"{c}"' for c in frame.columns)
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _utfall_insert")
    finally:
        con.unregister("_utfall_insert")
    stored = scalar(con, f"SELECT count(*) FROM {table} WHERE {where}", params)
    if stored != before + frame.height:
        raise WriteVerificationError(
            f"{table}: wrote {frame.height} rows for {dict(scope)}, but {stored - before} are "
            "stored; nothing of this run is published"
        )
    return frame.height


def read_table(
    con: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None
) -> pl.DataFrame:
    """Run a query and return a polars frame through Arrow."""
    return pl.from_arrow(con.sql(sql, params=params or None).to_arrow_table())  # type: ignore[return-value]


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None):
    """The single value a query returns (fetching all, which DuckDB 2 requires)."""
    return con.sql(sql, params=params or None).fetchall()[0][0]


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    return bool(
        scalar(
            con,
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = ? AND table_name = ?",
            [schema, name],
        )
    )


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All writes inside commit together or not at all."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
