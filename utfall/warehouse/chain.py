"""The append-only ledger: published runs, validator decisions and payments as a hash chain.

Table `ledger.chain` holds one row per entry: `seq` (1, 2, 3, ... over the whole
warehouse), `kind` (`run`, `decision`, `payment`), `contract_id`, `recorded_at` (ISO text),
`payload_json` (the entry's content, canonical JSON), `prev_sha256` and `sha256`, where

    sha256 = sha256_hex("utfall-ledger-v1\\n{seq}\\n{kind}\\n{contract_id}\\n{recorded_at}\\n"
                        "{prev_sha256}\\n{payload_json}")

and the first entry's `prev_sha256` is the genesis value, 64 zeros. `ledger.meta` keeps the
head (`chain_head` = "seq:sha256"), written in the same transaction as the entry, so that
removing the last entries is noticed too. Entries are never updated: a correction is a new
entry that names the one it corrects. DuckDB cannot forbid an UPDATE, so `verify` detects
one instead: an edited entry no longer matches its hash (or, re-hashed, breaks the next
entry's link); a deleted one leaves a gap in `seq` and a broken link. Views
`ledger.decisions` and `ledger.payments` show the payloads as columns.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import duckdb

from utfall.warehouse import layout, scalar, table_exists, transaction

GENESIS = "0" * 64
KINDS = ("run", "decision", "payment")
COLUMNS = layout.LEDGER_TABLES["ledger.chain"]


@dataclass(frozen=True)
class Entry:
    seq: int
    kind: str
    contract_id: str
    recorded_at: str
    payload: dict[str, Any]
    prev_sha256: str
    sha256: str


def canonical_json(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(
    seq: int, kind: str, contract_id: str, recorded_at: str, prev: str, payload_json: str
) -> str:
    text = f"utfall-ledger-v1\n{seq}\n{kind}\n{contract_id}\n{recorded_at}\n{prev}\n{payload_json}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def ensure(con: duckdb.DuckDBPyConnection) -> None:
    """Create the chain table and its views if missing (a warehouse made before them; a
    new one gets them from `layout.create`). No DDL when they exist."""
    if not table_exists(con, "ledger", "chain"):
        con.execute(f"CREATE TABLE IF NOT EXISTS ledger.chain ({COLUMNS})")
    for view, sql in layout.LEDGER_VIEWS.items():
        schema, name = view.split(".")
        if not table_exists(con, schema, name):
            con.execute(f"CREATE OR REPLACE VIEW {view} AS {sql}")


def _head(con: duckdb.DuckDBPyConnection) -> tuple[int, str]:
    row = con.execute("SELECT seq, sha256 FROM ledger.chain ORDER BY seq DESC LIMIT 1").fetchall()
    return (int(row[0][0]), row[0][1]) if row else (0, GENESIS)


def append_in_transaction(
    con: duckdb.DuckDBPyConnection, kind: str, contract_id: str, payload: dict[str, Any]
) -> Entry:
    """Append one entry; the caller holds the transaction (so the entry commits with what
    it records). Refuses to extend a chain whose head is not the recorded one."""
    if kind not in KINDS:
        raise ValueError(f"unknown ledger entry kind {kind!r}")
    seq, prev = _head(con)
    anchor = _anchor(con)
    if anchor is not None and anchor != f"{seq}:{prev}":
        from utfall.errors import WarehouseError

        raise WarehouseError(
            f"ledger.chain: the last entry is {seq}:{prev[:12]}, but the recorded head is "
            f"{anchor[:24]}...: the ledger was altered; run `utfall ledger verify`"
        )
    recorded_at = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
    text = canonical_json(payload)
    digest = entry_hash(seq + 1, kind, contract_id, recorded_at, prev, text)
    con.execute(
        "INSERT INTO ledger.chain VALUES (?, ?, ?, ?, ?, ?, ?)",
        [seq + 1, kind, contract_id, recorded_at, text, prev, digest],
    )
    con.execute("DELETE FROM ledger.meta WHERE key = 'chain_head'")
    con.execute("INSERT INTO ledger.meta VALUES ('chain_head', ?)", [f"{seq + 1}:{digest}"])
    return Entry(seq + 1, kind, contract_id, recorded_at, payload, prev, digest)


def append(
    con: duckdb.DuckDBPyConnection, entries: list[tuple[str, str, dict[str, Any]]]
) -> list[Entry]:
    """Append (kind, contract_id, payload) entries in one transaction."""
    ensure(con)
    with transaction(con):
        return [append_in_transaction(con, *e) for e in entries]


def _anchor(con: duckdb.DuckDBPyConnection) -> str | None:
    rows = con.execute("SELECT value FROM ledger.meta WHERE key = 'chain_head'").fetchall()
    return rows[0][0] if rows else None


def entries(con: duckdb.DuckDBPyConnection, contract_id: str | None = None) -> list[Entry]:
    """Entries in order (of one contract, or all); payloads parsed."""
    if not table_exists(con, "ledger", "chain"):
        return []
    sql = (
        "SELECT seq, kind, contract_id, recorded_at, payload_json, prev_sha256, sha256 "
        "FROM ledger.chain"
    )
    params: list[Any] = []
    if contract_id is not None:
        sql += " WHERE contract_id = ?"
        params.append(contract_id)
    out = []
    for seq, kind, cid, at, text, prev, digest in con.execute(
        sql + " ORDER BY seq", params
    ).fetchall():
        try:
            payload = json.loads(text)
        except json.JSONDecodeError:
            payload = {}
        out.append(Entry(int(seq), kind, cid, at, payload, prev, digest))
    return out


def verify(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every problem of the chain, one line each naming the entry; [] when intact."""
    if not table_exists(con, "ledger", "chain"):
        return []
    rows = con.execute(
        "SELECT seq, kind, contract_id, recorded_at, payload_json, prev_sha256, sha256 "
        "FROM ledger.chain ORDER BY seq"
    ).fetchall()
    problems: list[str] = []
    expected_seq, prev_hash = 1, GENESIS
    for seq, kind, cid, at, text, prev, digest in rows:
        name = f"ledger.chain entry {seq} ({kind}, {cid})"
        if seq != expected_seq:
            missing = (
                f"entry {expected_seq}"
                if seq == expected_seq + 1
                else f"entries {expected_seq}..{seq - 1}"
            )
            problems.append(f"ledger.chain: {missing} deleted (the sequence jumps to {seq})")
        if prev != prev_hash:
            problems.append(
                f"{name}: prev_sha256 {prev[:12]}... does not match the previous entry's hash "
                f"{prev_hash[:12]}...: the previous entry was edited or deleted"
            )
        actual = entry_hash(int(seq), kind, cid, at, prev, text)
        if actual != digest:
            problems.append(
                f"{name}: content edited (stored sha256 {digest[:12]}..., recomputed "
                f"{actual[:12]}...)"
            )
        expected_seq, prev_hash = int(seq) + 1, digest
    anchor = _anchor(con)
    head = f"{expected_seq - 1}:{prev_hash}" if rows else None
    if anchor is not None and anchor != head:
        a_seq = anchor.split(":", 1)[0]
        problems.append(
            f"ledger.chain: the recorded head is entry {a_seq} but the last entry is "
            f"{expected_seq - 1 if rows else 'none'}: entries at the end were deleted "
            "(or the head was edited)"
        )
    if rows and anchor is None:
        problems.append("ledger.meta: the chain head record is missing (deleted or edited)")
    problems += _published_without_entry(con)
    return problems


def _published_without_entry(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Each contract's published run must be its last `run` entry: catches a chain that
    was rewritten whole (re-hashed after a deletion) and a publication swapped by hand."""
    if not table_exists(con, "ledger", "published"):
        return []
    last: dict[str, str | None] = {}
    for e in entries(con):
        if e.kind == "run":
            last[e.contract_id] = e.payload.get("run_id")
    out = []
    for contract, run_id in con.execute(
        "SELECT contract_id, run_id FROM ledger.published ORDER BY contract_id"
    ).fetchall():
        if last.get(contract) != run_id:
            out.append(
                f"ledger.published: run {run_id} of {contract} is published, but the chain's "
                f"last publication of {contract} is "
                + (f"run {last[contract]}" if last.get(contract) else "none")
                + " (an entry was deleted, or the publication changed outside utfall)"
            )
    return out


def count(con: duckdb.DuckDBPyConnection) -> int:
    if not table_exists(con, "ledger", "chain"):
        return 0
    return int(scalar(con, "SELECT count(*) FROM ledger.chain"))
