"""Carry a warehouse of an earlier layout version into the current one, keeping its ledger.

A warehouse made by an earlier utfall cannot be opened (`_check_version`); rebuilding it
from the deliveries gives the measurements back, but not the ledger: the hash chain of
published runs, the validator's signed decisions and the payment instructions, which the
periods after an approved one read as "paid before". `upgrade` makes a new warehouse of the
current layout holding the old chain entry for entry (and its recorded head), checked
before and after, then swaps the files: the old file is kept beside it as
`<name>.v<version>.duckdb`, never changed. Published runs are not carried (their tables
changed with the layout): each contract is measured again with `utfall run`, which
publishes a new run on top of the carried chain.

Nothing is half-done: the new file is written under a temporary name and only renamed into
place once its chain verifies and its entry count matches; until then the old file is
where it was. A refused upgrade (an altered chain, a locked or damaged file) changes
nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from utfall.errors import WarehouseError
from utfall.warehouse import _open, chain, connect, layout, table_exists, transaction


@dataclass(frozen=True)
class Upgraded:
    """What `upgrade` did: the old layout version, the entries carried, where the old file is
    now (None when it was already current)."""

    old_version: str
    entries: int
    kept_as: Path | None


def _version(con, path: Path) -> str:
    if not table_exists(con, "ledger", "meta"):
        raise WarehouseError(
            f"{path}: no ledger.meta, so no layout version to upgrade from (a layout older "
            "than the ledger has no decisions to keep); move the file aside and re-run"
        )
    rows = con.sql("SELECT value FROM ledger.meta WHERE key = 'schema_version'").fetchall()
    return str(rows[0][0]) if rows else "unknown"


def _aside(path: Path, version: str) -> Path:
    """`<stem>.v<version><suffix>` beside `path`, numbered if taken (never overwritten)."""
    candidate = path.with_name(f"{path.stem}.v{version}{path.suffix}")
    n = 2
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}.v{version}-{n}{path.suffix}")
        n += 1
    return candidate


def upgrade(path: str | Path) -> Upgraded:
    """Upgrade the warehouse file `path` in place (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise WarehouseError(f"{path}: no warehouse here to upgrade")
    wal = path.with_name(path.name + ".wal")
    if wal.exists():  # it would be replayed onto whatever file is at `path` next
        raise WarehouseError(
            f"{wal}: a write-ahead log lies beside the warehouse (a writer was stopped before "
            "it closed the file); nothing changed. Open the file once with the utfall "
            "version that wrote it, or with duckdb, so the log is written into it"
        )
    old = _open(path, read_only=True)
    try:
        version = _version(old, path)
        if version == layout.SCHEMA_VERSION:
            return Upgraded(version, chain.count(old), None)
        problems = chain.verify(old)
        if problems:
            raise WarehouseError(
                f"{path}: its ledger does not verify, so it is not carried over: "
                + "; ".join(problems[:3])
                + ("; ..." if len(problems) > 3 else "")
                + " (nothing changed)"
            )
        rows = (
            old.sql(
                "SELECT seq, kind, contract_id, recorded_at, payload_json, prev_sha256, sha256 "
                "FROM ledger.chain ORDER BY seq"
            ).fetchall()
            if table_exists(old, "ledger", "chain")
            else []
        )
        head = old.sql("SELECT value FROM ledger.meta WHERE key = 'chain_head'").fetchall()
    finally:
        old.close()

    new_path = path.with_name(f".{path.name}.upgrade")
    for leftover in (new_path, new_path.with_name(new_path.name + ".wal")):
        leftover.unlink(missing_ok=True)  # of an upgrade killed before its swap
    try:
        new = connect(new_path, timeout=0)
        try:
            with transaction(new):
                if rows:
                    new.executemany("INSERT INTO ledger.chain VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                if head:
                    new.execute("INSERT INTO ledger.meta VALUES ('chain_head', ?)", [head[0][0]])
            stored = chain.count(new)
            problems = chain.verify(new)
        finally:
            new.close()
        if stored != len(rows) or problems:
            raise WarehouseError(
                f"{path}: the upgraded ledger holds {stored} of {len(rows)} entries"
                + (f" and does not verify: {problems[0]}" if problems else "")
                + " (nothing changed)"
            )
        kept_as = _aside(path, version)
        os.replace(path, kept_as)
        try:
            os.replace(new_path, path)
        except BaseException:
            os.replace(kept_as, path)  # put the old file back
            raise
    except BaseException:
        new_path.unlink(missing_ok=True)
        raise
    return Upgraded(version, len(rows), kept_as)
