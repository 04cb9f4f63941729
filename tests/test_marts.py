"""The analysts' marts and their snapshot, on the measured example (tests/conftest.py).

Every mart view and column is described; no column name is a reserved word; no mart holds an
identity number or a pseudonym (names and values scanned); small cells are suppressed with the
plan's threshold; every row leads back to its run, plan and delivered files; the snapshot holds
every mart, row for row.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

from tests.conftest import empty_warehouse_file
from utfall import personnummer, snapshot, warehouse
from utfall.warehouse import chain, marts

IDENTITY = re.compile(r"(?<![0-9A-Za-z])(\d{6}|\d{8})[-+]?\d{4}(?![0-9A-Za-z])")
TOKEN = re.compile(r"[0-9a-f]{16,}")


@pytest.fixture
def con(demo_warehouse):
    c = warehouse.connect(demo_warehouse.warehouse, read_only=True)
    yield c
    c.close()


@pytest.fixture
def writable(demo_warehouse, tmp_path) -> Path:
    """A copy of the demo warehouse a test may change."""
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(demo_warehouse.warehouse, path)
    return path


def _columns(con, schema: str = "marts") -> list[tuple[str, str, str | None, str]]:
    return con.sql(
        "SELECT table_name, column_name, comment, data_type FROM duckdb_columns() "
        "WHERE schema_name = ? ORDER BY table_name, column_index",
        params=[schema],
    ).fetchall()


def test_every_mart_and_column_is_described(con):
    views = con.sql(
        "SELECT schema_name || '.' || view_name, comment FROM duckdb_views() "
        "WHERE schema_name IN ('marts', 'restricted')"
    ).fetchall()
    assert {v for v, _ in views} >= set(marts.MARTS) | {"restricted.effects"}
    assert all(c and len(c) > 10 for _, c in views), views
    for schema in ("marts", "restricted"):
        cols = _columns(con, schema)
        assert cols
        missing = [f"{t}.{c}" for t, c, comment, _ in cols if not comment]
        assert not missing, missing
    tables = con.sql(
        "SELECT table_name, comment FROM duckdb_tables() WHERE schema_name = 'ledger' "
        "AND table_name IN ('chain', 'run_plans')"
    ).fetchall()
    assert len(tables) == 2 and all(c for _, c in tables)


def test_no_reserved_words_and_no_group_column(con):
    reserved = {
        k
        for (k,) in con.sql(
            "SELECT keyword_name FROM duckdb_keywords() "
            "WHERE keyword_category IN ('reserved', 'type_function')"
        ).fetchall()
    }
    names = {c for _, c, _, _ in _columns(con)}
    assert "arm" in names and "group" not in names
    assert not names & reserved, names & reserved
    # An unquoted query on the new name works (the old `group` needed quoting).
    assert con.sql("SELECT DISTINCT arm FROM marts.outcomes_by_period ORDER BY arm").fetchall() == [
        ("comparison",),
        ("treated",),
    ]


def test_no_identity_numbers_or_pseudonyms_in_marts(con):
    pseudonyms = {
        p
        for view in ("staging.employee_roster", "staging.sick_leave_spells", "raw.employee_roster")
        for (p,) in con.sql(f"SELECT DISTINCT person_id FROM {view}").fetchall()
        if p
    }
    assert len(pseudonyms) > 1000  # the scan has something to find
    names = {c for _, c, _, _ in _columns(con)}
    assert not names & {"person_id", "personnummer", "pnr", "record", "_line"}
    hits = []
    for table, column, _, _ in _columns(con):
        values = con.sql(
            f'SELECT DISTINCT CAST("{column}" AS VARCHAR) FROM marts.{table} '
            f'WHERE "{column}" IS NOT NULL'
        ).fetchall()
        for (v,) in values:
            found = [m.group(0) for m in IDENTITY.finditer(v)]
            if found and personnummer.check(pl.Series(found), 2025)["problem"].is_null().any():
                hits.append(f"{table}.{column}: identity number")
            if any(t in pseudonyms for t in TOKEN.findall(v)):
                hits.append(f"{table}.{column}: pseudonym")
    assert not hits, hits


def test_mart_rows_trace_to_run_plan_and_files(con, demo_warehouse, example_plan):
    files = sorted(
        (s, f, hashlib.sha256((demo_warehouse.deliveries / f).read_bytes()).hexdigest())
        for s, f in con.sql("SELECT source, file FROM marts.deliveries").fetchall()
    )
    expected = hashlib.sha256("\n".join(f"{s}/{f}:{h}" for s, f, h in files).encode()).hexdigest()
    for name in marts.MARTS:
        cols = {c for t, c, _, _ in _columns(con) if f"marts.{t}" == name}
        if "inputs_sha256" not in cols or name in ("marts.runs", "marts.decisions"):
            continue
        if name == "marts.person_flow":  # person-data outcomes only: none in sick leave
            continue
        rows = con.sql(f"SELECT DISTINCT run_id, plan_hash, inputs_sha256 FROM {name}").fetchall()
        assert rows == [(demo_warehouse.run_id, example_plan.hash, expected)], name


def test_outcomes_by_period_are_the_reports_series(con, demo_warehouse):
    doc = json.loads((demo_warehouse.reports / "report.json").read_text(encoding="utf-8"))
    mart = {
        (o, a, str(p)): (e, v, s)
        for o, a, p, e, v, s in con.sql(
            "SELECT outcome, arm, period_start, employees, value, suppressed "
            "FROM marts.outcomes_by_period"
        ).fetchall()
    }
    n = 0
    for outcome in doc["outcomes"]:
        for r in outcome["series"]:
            e, v, s = mart[(outcome["id"], r["group"], r["period_start"])]
            assert (e, s) == (r["employees"], r["suppressed"])
            assert v == pytest.approx(r["value"], abs=1e-6)
            n += 1
    assert n == len(mart) > 0


def test_small_cells_are_suppressed_with_the_plans_threshold(writable):
    con = duckdb.connect(str(writable))
    # A threshold inside the range of unit sizes, so both kinds of cell exist.
    k = con.sql("SELECT median(employees) FROM restricted.outcome_panel").fetchall()[0][0]
    con.execute("UPDATE ledger.run_plans SET min_cell_size = ?", [int(k)])
    rows = con.sql(
        "SELECT r.employees, m.employees, m.numerator, m.value, m.suppressed "
        "FROM marts.outcomes_by_unit m JOIN restricted.outcome_panel r "
        "USING (outcome, unit_id, period_start)"
    ).fetchall()
    small = [r for r in rows if r[0] < k]
    assert small and len(small) < len(rows)
    assert all(r[1:] == (None, None, None, True) for r in small)
    assert all(r[4] is False and r[1] == r[0] and r[3] is not None for r in rows if r[0] >= k)
    # No recorded threshold: nothing is shown rather than everything.
    con.execute("DELETE FROM ledger.run_plans")
    assert con.sql(
        "SELECT bool_and(suppressed), count(value) FROM marts.outcomes_by_unit"
    ).fetchall() == [(True, 0)]
    con.close()


def test_effects_and_payments_match_the_restricted_detail(con):
    assert (
        con.sql(
            "SELECT outcome, estimate, ci_low, ci_high FROM marts.effects EXCEPT "
            "SELECT outcome, estimate, ci_low, ci_high FROM restricted.effects"
        ).fetchall()
        == []
    )
    (total,) = con.sql("SELECT total FROM marts.payment_proposal").fetchall()[0]
    assert total == con.sql("SELECT sum(amount) FROM marts.payments_proposed").fetchall()[0][0]
    rel = con.sql("SELECT relative_ci_low < relative_estimate FROM marts.effects").fetchall()
    assert rel and all(r for (r,) in rel)


def test_decisions_mart_shows_the_ledger(writable, demo_warehouse):
    con = duckdb.connect(str(writable))
    (manifest_sha,) = con.execute(
        "SELECT json_extract_string(payload_json, '$.manifest_sha256') FROM ledger.chain "
        "WHERE kind = 'run' AND json_extract_string(payload_json, '$.run_id') = ?",
        [demo_warehouse.run_id],
    ).fetchall()[0]
    payload = {
        "period": "2025",
        "decision": "approved",
        "manifest_sha256": manifest_sha,
        "signer": "ed25519:ab12",
        "decided_at": "2026-01-15T10:00:00+00:00",
    }
    chain.append(con, [("decision", "demokommun-korttidssjuk-2025", payload)])
    rows = con.sql("SELECT decision, plan_hash IS NOT NULL FROM marts.decisions").fetchall()
    assert rows == [("approved", True)]
    con.close()


def test_snapshot_is_complete_and_matches_the_marts(con, demo_warehouse):
    link = snapshot.snapshot_path(demo_warehouse.warehouse)
    assert link.is_symlink()
    manifest = snapshot.read_manifest(demo_warehouse.warehouse)
    assert sorted(manifest["marts"]) == sorted(m.split(".")[1] for m in marts.MARTS)
    assert manifest["published"] == [
        {
            "contract_id": "demokommun-korttidssjuk-2025",
            "run_id": demo_warehouse.run_id,
            "plan_hash": con.sql("SELECT plan_hash FROM ledger.published").fetchall()[0][0],
        }
    ]
    for table, entry in manifest["marts"].items():
        path = link / entry["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        quoted = str(path).replace("'", "''")
        for a, b in ((f"marts.{table}", f"'{quoted}'"), (f"'{quoted}'", f"marts.{table}")):
            diff = con.sql(f"SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b}").fetchall()
            assert diff == [], (table, diff[:3])
        assert con.sql(f"SELECT count(*) FROM '{quoted}'").fetchall()[0][0] == entry["rows"]
    assert manifest["marts"]["outcomes_by_unit"]["rows"] > 0


def test_snapshot_swaps_atomically_and_keeps_two(writable):
    con = duckdb.connect(str(writable))
    killed = writable.with_name(f".{writable.stem}.snapshot.999999.tmp")
    killed.symlink_to("nowhere")  # what an export killed before its rename leaves
    links = [snapshot.export(con) for _ in range(3)]
    link = links[-1]
    store = link.parent / f".{writable.stem}.snapshots"
    folders = sorted(p for p in store.iterdir())
    assert len(folders) == snapshot.KEEP
    assert link.resolve() == folders[-1].resolve()
    assert not [p for p in link.parent.iterdir() if p.name.endswith(".tmp")]
    # The same published state exports the same bytes.
    first, last = (json.loads((f / "manifest.json").read_text()) for f in folders)
    assert {k: v["sha256"] for k, v in first["marts"].items()} == {
        k: v["sha256"] for k, v in last["marts"].items()
    }
    con.close()


def test_snapshot_of_an_in_memory_warehouse_is_refused():
    with pytest.raises(snapshot.SnapshotError, match="in-memory warehouse has no snapshot"):
        snapshot.export(duckdb.connect())


def test_snapshot_refuses_a_folder_it_did_not_make(writable):
    snapshot.snapshot_path(writable).mkdir()
    con = duckdb.connect(str(writable))
    with pytest.raises(snapshot.SnapshotError, match="not a snapshot link made by utfall"):
        snapshot.export(con)
    con.close()


def test_layout_documents_itself_on_a_fresh_warehouse(tmp_path):
    con = warehouse.connect(tmp_path / "w.duckdb")  # created here, not a copy
    undescribed = con.sql(
        "SELECT schema_name, table_name, column_name FROM duckdb_columns() "
        "WHERE schema_name IN ('marts', 'restricted', 'ledger') AND comment IS NULL"
    ).fetchall()
    assert not undescribed
    tables = con.sql(
        "SELECT table_name, comment FROM duckdb_tables() WHERE schema_name = 'ledger'"
    ).fetchall()
    assert len(tables) >= 7 and all(c for _, c in tables), tables
    con.close()


def test_a_snapshot_that_cannot_be_written_does_not_unpublish_the_run(tmp_path, capsys):
    """Someone made the snapshot path a folder of their own: the run is still published, the
    folder is left alone, and the run says why the snapshot was not refreshed."""
    from utfall.cli import EXAMPLE_PLAN, simulate_deliveries
    from utfall.pipeline import run
    from utfall.plan import load_plan

    simulate_deliveries(EXAMPLE_PLAN, tmp_path / "d", 1000, 0.12, 0.01, seed=5)
    wh = empty_warehouse_file(tmp_path / "warehouse.duckdb")
    theirs = snapshot.snapshot_path(wh)
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine", encoding="utf-8")
    result = run(load_plan(EXAMPLE_PLAN), wh, tmp_path / "d", tmp_path / "r", lambda _: None)
    assert "not a snapshot link made by utfall" in capsys.readouterr().err
    assert (theirs / "notes.txt").read_text(encoding="utf-8") == "mine"
    con = warehouse.connect(wh, read_only=True)
    assert con.sql("SELECT run_id FROM marts.contracts").fetchall() == [(result.run_id,)]
    con.close()
