"""The DuckDB warehouse: where it lives, its layers, and safe replace-in-one-transaction.

Layers are schemas: `raw` (delivered rows, pseudonymised, with the delivery ledger),
`quarantine` (rows that broke a rule, with the rule), `staging` (validated, typed rows),
`marts` (outcome panel, effects, payments; what analysts read). Every write replaces a
well-defined slice inside one transaction, so a re-run gives the same warehouse and a
failure leaves the previous state intact.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import polars as pl

WAREHOUSE_ENV = "UTFALL_WAREHOUSE"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WAREHOUSE = REPO_ROOT / "data" / "warehouse.duckdb"
LAYERS = ("raw", "quarantine", "staging", "marts")


def default_path() -> Path:
    return Path(os.environ.get(WAREHOUSE_ENV) or DEFAULT_WAREHOUSE)


def prepare(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Session settings and layer schemas; safe to call on every connection."""
    con.execute("SET python_enable_replacements=false")
    for layer in LAYERS:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {layer}")
    return con


def connect(path: str | Path | None = None, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    path = Path(path) if path else default_path()
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
    if read_only:
        con.execute("SET python_enable_replacements=false")
        return con
    return prepare(con)


def replace_table(con: duckdb.DuckDBPyConnection, table: str, df: pl.DataFrame) -> None:
    """Create or replace `table` with exactly the rows of `df` (through Arrow)."""
    con.register("_utfall_replace", df.to_arrow())
    try:
        con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM _utfall_replace")
    finally:
        con.unregister("_utfall_replace")


def replace_where(
    con: duckdb.DuckDBPyConnection, table: str, df: pl.DataFrame, where: str, params: list
) -> None:
    """Delete the rows matching `where`, then insert `df` (same columns), creating the table
    from `df`'s schema when it does not exist yet. Call inside a transaction."""
    con.register("_utfall_insert", df.to_arrow())
    try:
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM _utfall_insert LIMIT 0")
        con.execute(f"DELETE FROM {table} WHERE {where}", params)
        cols = ", ".join(f'"{c}"' for c in df.columns)
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _utfall_insert")
    finally:
        con.unregister("_utfall_insert")


def read_table(
    con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None
) -> pl.DataFrame:
    """Run a query and return a polars frame through Arrow."""
    return pl.from_arrow(con.sql(sql, params=params or None).to_arrow_table())  # type: ignore[return-value]


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None):
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
