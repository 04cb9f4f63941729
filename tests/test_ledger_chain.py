"""The append-only ledger: a hash chain whose edited or deleted entries are named."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import duckdb
import pytest

from tests.conftest import new_warehouse
from utfall import cli
from utfall.errors import WarehouseError
from utfall.warehouse import chain, connect


@pytest.fixture(scope="module")
def _chained(tmp_path_factory) -> Path:
    """Four entries over two contracts, appended once per module."""
    path = tmp_path_factory.mktemp("chain") / "w.duckdb"
    con = new_warehouse(path)
    chain.append(
        con,
        [
            ("run", "c1", {"run_id": "r1", "version": 1, "report_sha256": "a" * 64}),
            ("decision", "c1", {"period": "final", "decision": "approved", "version": 1}),
            ("payment", "c1", {"period": "final", "amount": "100.00", "currency": "SEK"}),
        ],
    )
    chain.append(con, [("run", "c2", {"run_id": "r2", "version": 1})])
    con.close()
    return path


@pytest.fixture
def wh(_chained: Path, tmp_path: Path) -> Path:
    """The test's own copy of the chained warehouse, to tamper with."""
    path = tmp_path / "w.duckdb"
    shutil.copy(_chained, path)
    return path


def _sql(path: Path, sql: str) -> None:
    con = duckdb.connect(str(path))
    con.execute(sql)
    con.close()


def _verify(path: Path) -> list[str]:
    con = connect(path, read_only=True)
    try:
        return chain.verify(con)
    finally:
        con.close()


def test_genesis_and_links(wh):
    con = connect(wh, read_only=True)
    entries = chain.entries(con)
    con.close()
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    assert entries[0].prev_sha256 == chain.GENESIS == "0" * 64
    for prev, e in zip(entries, entries[1:], strict=False):
        assert e.prev_sha256 == prev.sha256
    # The documented formula, recomputed by hand for the first entry.
    e = entries[0]
    text = (
        f"utfall-ledger-v1\n1\nrun\nc1\n{e.recorded_at}\n{'0' * 64}\n"
        '{"report_sha256":"' + "a" * 64 + '","run_id":"r1","version":1}'
    )
    assert e.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert _verify(wh) == []


def test_views_show_decisions_and_payments(wh):
    con = connect(wh, read_only=True)
    assert con.sql("SELECT period, decision, version FROM ledger.decisions").fetchall() == [
        ("final", "approved", 1)
    ]
    assert con.sql("SELECT amount::VARCHAR, currency FROM ledger.payments").fetchall() == [
        ("100.00", "SEK")
    ]
    con.close()


def test_edited_entry_is_named(wh):
    _sql(
        wh,
        "UPDATE ledger.chain SET payload_json = replace(payload_json, '100', '900') WHERE seq = 3",
    )
    problems = _verify(wh)
    assert problems == [problems[0]] and "entry 3 (payment, c1): content edited" in problems[0]


def test_edited_and_rehashed_entry_breaks_the_next_link(wh):
    con = duckdb.connect(str(wh))
    seq, kind, cid, at, text, prev = con.execute(
        "SELECT seq, kind, contract_id, recorded_at, payload_json, prev_sha256 "
        "FROM ledger.chain WHERE seq = 2"
    ).fetchall()[0]
    forged = text.replace("approved", "rejected")
    digest = chain.entry_hash(seq, kind, cid, at, prev, forged)
    con.execute(
        "UPDATE ledger.chain SET payload_json = ?, sha256 = ? WHERE seq = 2", [forged, digest]
    )
    con.close()
    problems = _verify(wh)
    assert any(
        "entry 3 (payment, c1): prev_sha256" in p and "edited or deleted" in p for p in problems
    ), problems


def test_deleted_entry_is_named(wh):
    _sql(wh, "DELETE FROM ledger.chain WHERE seq = 2")
    problems = _verify(wh)
    assert any("entry 2 deleted" in p for p in problems), problems
    assert any("entry 3 (payment, c1): prev_sha256" in p for p in problems), problems


def test_deleted_last_entry_is_noticed(wh):
    _sql(wh, "DELETE FROM ledger.chain WHERE seq = 4")
    problems = _verify(wh)
    assert any("recorded head is entry 4" in p and "last entry is 3" in p for p in problems)


def test_altered_chain_is_not_extended(wh):
    _sql(wh, "DELETE FROM ledger.chain WHERE seq = 4")
    con = connect(wh)
    with pytest.raises(WarehouseError, match="the ledger was altered"):
        chain.append(con, [("run", "c3", {})])
    assert chain.count(con) == 3
    con.close()


def test_failed_append_leaves_nothing(wh):
    con = connect(wh)
    with pytest.raises(ValueError, match="unknown ledger entry kind"):
        chain.append(con, [("run", "c3", {"a": 1}), ("bogus", "c3", {})])
    assert chain.count(con) == 4
    con.close()
    assert _verify(wh) == []


def test_cli_ledger_verify(wh, capsys):
    assert cli.main(["ledger", "verify", "--warehouse", str(wh)]) == 0
    assert "ledger intact: 4 entries" in capsys.readouterr().out
    _sql(wh, "UPDATE ledger.chain SET contract_id = 'cX' WHERE seq = 1")
    assert cli.main(["ledger", "verify", "--warehouse", str(wh)]) == 1
    out = capsys.readouterr().out
    assert "ALTERED: ledger.chain entry 1 (run, cX): content edited" in out


def test_cli_ledger_verify_missing_warehouse(tmp_path, capsys):
    assert cli.main(["ledger", "verify", "--warehouse", str(tmp_path / "none.duckdb")]) == 2
    err = capsys.readouterr().err
    assert "none.duckdb" in err and err.count("\n") == 1


def test_empty_warehouse_is_intact(tmp_path):
    con = connect(tmp_path / "e.duckdb")  # a new warehouse, created here
    assert chain.verify(con) == [] and chain.count(con) == 0
    con.close()


def test_a_rewritten_chain_is_caught_by_the_published_runs(wh):
    """Deleting an entry and re-hashing everything after it (head included) makes a
    consistent chain; the publication it removed is still named."""
    _sql(
        wh,
        "INSERT INTO ledger.published VALUES ('c1', 'r1', 'plan', NULL), "
        "('c2', 'r2', 'plan', NULL)",
    )
    assert _verify(wh) == []
    con = duckdb.connect(str(wh))
    con.execute("DELETE FROM ledger.chain WHERE seq = 4")
    con.execute(
        "UPDATE ledger.meta SET value = (SELECT seq || ':' || sha256 FROM ledger.chain "
        "WHERE seq = 3) WHERE key = 'chain_head'"
    )
    con.close()
    problems = _verify(wh)
    assert problems == [
        "ledger.published: run r2 of c2 is published, but the chain's last publication of c2 "
        "is none (an entry was deleted, or the publication changed outside utfall)"
    ]
