"""The analysts' read-only snapshot: every mart as a Parquet file, exported after a publish.

DuckDB lets one process write a database file, and a reader holding it open can make the
next run wait. So analysts do not open the warehouse: after each published run the marts
are exported to `<warehouse>.snapshot/` (e.g. `data/warehouse.snapshot/` beside
`data/warehouse.duckdb`), one `<mart>.parquet` per view of schema `marts`, plus
`manifest.json` (the published run of each contract, each file's rows and sha256).

The export is atomic: a new folder is written under `.<warehouse>.snapshots/`, then the
`<warehouse>.snapshot` symlink is replaced in one rename, so a reader sees the old
snapshot or the new one, never a mix being written. The previous folder is kept (a reader
may still be reading it); older ones are removed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from pathlib import Path

import duckdb

from utfall.errors import UserError
from utfall.warehouse.marts import MARTS

MANIFEST = "manifest.json"
KEEP = 2  # snapshot folders kept: the current one and the one a reader may still hold


class SnapshotError(UserError):
    """The snapshot folder cannot be written (the run itself is published)."""


def snapshot_path(warehouse_path: str | Path) -> Path:
    """Where analysts find the snapshot of a warehouse file."""
    p = Path(warehouse_path)
    return p.with_name(p.stem + ".snapshot")


def _store(warehouse_path: Path) -> Path:
    return warehouse_path.with_name(f".{warehouse_path.stem}.snapshots")


def database_path(con: duckdb.DuckDBPyConnection) -> Path | None:
    """The file behind `con` (None for an in-memory database)."""
    rows = con.sql(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchall()
    return Path(rows[0][0]) if rows and rows[0][0] else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export(con: duckdb.DuckDBPyConnection, warehouse_path: str | Path | None = None) -> Path:
    """Export every mart to a new snapshot folder and point `<warehouse>.snapshot` at it.

    Returns the snapshot path. Rows are written in a fixed order (ORDER BY ALL), so the
    same published state gives the same rows."""
    wh = Path(warehouse_path) if warehouse_path else database_path(con)
    if wh is None:
        raise SnapshotError("an in-memory warehouse has no snapshot folder")
    link, store = snapshot_path(wh), _store(wh)
    if link.exists() and not link.is_symlink():
        raise SnapshotError(
            f"{link}: exists and is not a snapshot link made by utfall; move it aside"
        )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = store / stamp
    try:
        target.mkdir(parents=True, exist_ok=False)
        marts = {}
        for name in MARTS:
            table = name.split(".", 1)[1]
            out = target / f"{table}.parquet"
            quoted = str(out).replace("'", "''")
            # COPY returns the rows it wrote: the file's own count, no second scan
            rows = con.execute(
                f"COPY (SELECT * FROM {name} ORDER BY ALL) TO '{quoted}' (FORMAT parquet)"
            ).fetchall()[0][0]
            marts[table] = {"file": out.name, "rows": rows, "sha256": _sha256(out)}
        published = [
            {"contract_id": c, "run_id": r, "plan_hash": h}
            for c, r, h in con.sql(
                "SELECT contract_id, run_id, plan_hash FROM ledger.published ORDER BY ALL"
            ).fetchall()
        ]
        manifest = {
            "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "warehouse": wh.name,
            "published": published,
            "marts": marts,
        }
        (target / MANIFEST).write_text(
            json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        for stale in link.parent.glob(f".{link.name}.*.tmp"):  # left by a killed export
            stale.unlink(missing_ok=True)
        tmp_link = link.with_name(f".{link.name}.{os.getpid()}.tmp")
        tmp_link.symlink_to(os.path.relpath(target, link.parent))
        os.replace(tmp_link, link)  # atomic: readers see the old folder or the new one
    except OSError as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise SnapshotError(f"{link}: cannot write the analysts' snapshot: {exc}") from None
    for old in sorted(p for p in store.iterdir() if p.is_dir())[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return link


def read_manifest(warehouse_path: str | Path) -> dict | None:
    """The current snapshot's manifest, or None when there is none yet."""
    path = snapshot_path(warehouse_path) / MANIFEST
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
