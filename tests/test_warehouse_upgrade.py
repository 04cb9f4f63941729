"""`utfall warehouse upgrade`: a warehouse of an earlier layout version becomes a current one
holding the same ledger entry for entry; the old file is kept, unchanged; a refused or
failed upgrade changes nothing.

The earlier version is made the way it shows itself to utfall: a warehouse whose
ledger.meta says another schema_version (what `warehouse.connect` refuses)."""

from __future__ import annotations

import hashlib
import shutil

import duckdb
import pytest

from utfall import warehouse
from utfall.cli import main
from utfall.errors import WarehouseError
from utfall.warehouse import chain, layout
from utfall.warehouse.upgrade import upgrade

CHAIN = "SELECT * FROM ledger.chain ORDER BY seq"


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def old(demo_warehouse, tmp_path):
    """A copy of the measured example (a published run in its chain) with an approval added,
    then marked as layout version 4."""
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(demo_warehouse.warehouse, path)
    con = duckdb.connect(str(path))
    chain.append(
        con,
        [
            (
                "decision",
                "demokommun-korttidssjuk-2025",
                {"period": "2025", "decision": "approved", "amount": "600000.00"},
            )
        ],
    )
    con.execute("UPDATE ledger.meta SET value = '4' WHERE key = 'schema_version'")
    entries = con.sql(CHAIN).fetchall()
    con.close()
    with pytest.raises(WarehouseError, match="warehouse upgrade"):
        warehouse.connect(path)  # refused, and the message names the way out
    return path, entries


def test_upgrade_carries_the_ledger_and_keeps_the_old_file(old, capsys):
    path, entries = old
    before = _sha(path)
    code = main(["warehouse", "upgrade", "--warehouse", str(path)])
    out = capsys.readouterr().out
    assert code == 0
    kept = path.with_name("warehouse.v4.duckdb")
    assert f"{len(entries)} ledger entries carried over" in out and str(kept) in out
    assert _sha(kept) == before  # the old file, untouched
    con = warehouse.connect(path, read_only=True)  # opens: current layout
    try:
        assert con.sql(CHAIN).fetchall() == entries
        assert chain.verify(con) == []
        assert con.sql("SELECT count(*) FROM ledger.published").fetchall() == [(0,)]
        (decision,) = con.sql("SELECT decision, period FROM ledger.decisions").fetchall()
        assert decision == ("approved", "2025")
        version = con.sql("SELECT value FROM ledger.meta WHERE key = 'schema_version'")
        assert version.fetchall() == [(layout.SCHEMA_VERSION,)]
    finally:
        con.close()
    assert not path.with_name(".warehouse.duckdb.upgrade").exists()
    # status lists the contract from its carried ledger, with the decision, before any run
    assert main(["status", "--warehouse", str(path), "--reports", str(path.parent)]) == 0
    shown = capsys.readouterr().out
    assert "contract demokommun-korttidssjuk-2025" in shown
    assert "runs         none in this warehouse (its ledger entries were carried over)" in shown
    assert "decision     approved 600000.00 for 2025" in shown
    # a second upgrade has nothing to do
    assert main(["warehouse", "upgrade", "--warehouse", str(path)]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_a_run_publishes_on_top_of_the_carried_ledger(old, demo_warehouse, example_plan):
    from utfall.pipeline import run

    path, entries = old
    upgrade(path)
    result = run(
        example_plan,
        path,
        demo_warehouse.deliveries,
        path.parent / "report",
        progress=lambda _m: None,
    )
    con = warehouse.connect(path, read_only=True)
    try:
        assert con.sql(CHAIN).fetchall()[: len(entries)] == entries
        assert chain.count(con) == len(entries) + 1 and chain.verify(con) == []
        assert con.sql("SELECT run_id FROM ledger.published").fetchall() == [(result.run_id,)]
    finally:
        con.close()


def test_an_altered_ledger_is_not_carried_and_nothing_changes(old, capsys):
    path, _ = old
    con = duckdb.connect(str(path))
    con.execute("UPDATE ledger.chain SET payload_json = replace(payload_json, '600000', '900000')")
    con.close()
    before = sorted(p.name for p in path.parent.iterdir())
    sha = _sha(path)
    code = main(["warehouse", "upgrade", "--warehouse", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "its ledger does not verify" in err and "content edited" in err
    assert sorted(p.name for p in path.parent.iterdir()) == before and _sha(path) == sha


def test_a_failure_after_writing_the_new_file_leaves_the_old_in_place(old, monkeypatch):
    """The new file is checked before the swap; a check that fails (here: forced) removes it
    and leaves the old file where and as it was."""
    path, _ = old
    sha = _sha(path)
    calls = []
    real = chain.verify

    def second_call_fails(con):
        calls.append(1)
        return real(con) if len(calls) == 1 else ["forced"]

    monkeypatch.setattr(chain, "verify", second_call_fails)
    with pytest.raises(WarehouseError, match="does not verify: forced"):
        upgrade(path)
    assert _sha(path) == sha
    assert not path.with_name(".warehouse.duckdb.upgrade").exists()
    assert not path.with_name("warehouse.v4.duckdb").exists()


def test_missing_file_and_a_left_write_ahead_log_are_one_line(tmp_path, capsys):
    code = main(["warehouse", "upgrade", "--warehouse", str(tmp_path / "none.duckdb")])
    assert code == 2 and "no warehouse here to upgrade" in capsys.readouterr().err
    path = tmp_path / "w.duckdb"
    path.write_bytes(b"")
    path.with_name("w.duckdb.wal").write_bytes(b"x")
    code = main(["warehouse", "upgrade", "--warehouse", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and "a write-ahead log lies beside the warehouse" in err
