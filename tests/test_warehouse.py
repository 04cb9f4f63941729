"""The warehouse's promises: verified writes, runs that publish atomically, contracts that
never touch each other's rows, a damaged or foreign file refused with a clear error."""

from __future__ import annotations

import json
import shutil

import duckdb
import polars as pl
import pytest

from tests.conftest import empty_warehouse_file, new_warehouse
from utfall import warehouse
from utfall.cohort import CohortError
from utfall.errors import WarehouseError
from utfall.pipeline import run
from utfall.plan import load_plan
from utfall.validate import DeliveryRejected
from utfall.warehouse import WriteVerificationError, runs


def _quiet(_msg: str) -> None:
    pass


def test_300k_rows_written_in_one_transaction_are_all_stored(tmp_path):
    """DuckDB 2.0.0 left a table empty after CREATE ... LIMIT 0 and a large INSERT in one
    transaction; the project's write path must store every row (and says so if not)."""
    con = new_warehouse(tmp_path / "w.duckdb")
    n = 300_000
    frame = pl.DataFrame(
        {
            "_file": ["f.csv"] * n,
            "_line": pl.int_range(2, n + 2, eager=True),
            "person_id": [f"p{i}" for i in range(n)],
            "pnr_problem": [None] * n,
            "spell_start": ["2024-01-01"] * n,
            "spell_end": ["2024-01-02"] * n,
            "extent": ["100"] * n,
        },
        schema_overrides={"pnr_problem": pl.String},
    )
    scope = {"contract_id": "c", "run_id": "r", "source": "s"}
    with warehouse.transaction(con):
        assert warehouse.insert_rows(con, "work.raw_sick_leave_spells", frame, scope) == n
    con.close()
    con = warehouse.connect(tmp_path / "w.duckdb", read_only=True)
    assert warehouse.scalar(con, "SELECT count(*) FROM work.raw_sick_leave_spells") == n
    con.close()


class _DroppingInserts:
    """A connection whose INSERTs silently do nothing: a storage bug to be caught."""

    def __init__(self, con):
        self._con = con

    def execute(self, sql, *args):
        if sql.lstrip().upper().startswith("INSERT"):
            return None
        return self._con.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._con, name)


def test_a_lost_write_is_an_error(tmp_path):
    con = new_warehouse(tmp_path / "w.duckdb")
    frame = pl.DataFrame({"source": ["s"], "delivered": [3], "loaded": [2], "quarantined": [1]})
    with pytest.raises(WriteVerificationError, match="wrote 1 rows .* but 0 are stored"):
        warehouse.insert_rows(
            _DroppingInserts(con),
            "work.reconciliation",
            frame.drop("source"),
            {"contract_id": "c", "run_id": "r", "source": "s"},
        )
    con.close()


def test_damaged_warehouse_file_is_a_clear_error(tmp_path):
    path = empty_warehouse_file(tmp_path / "w.duckdb")
    warehouse.connect(path).close()  # a usable warehouse, before the damage
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])  # truncated, as by a full disk or a bad copy
    with pytest.raises(WarehouseError, match="not a usable DuckDB warehouse file"):
        warehouse.connect(path)
    path.write_bytes(b"name,value\nnot,a database\n" * 100)
    with pytest.raises(WarehouseError, match="not a usable DuckDB warehouse file"):
        warehouse.connect(path)


def test_warehouse_of_an_earlier_layout_is_refused(tmp_path):
    path = tmp_path / "w.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA raw; CREATE TABLE raw.deliveries (source VARCHAR)")
    con.close()
    with pytest.raises(WarehouseError, match="earlier utfall layout"):
        warehouse.connect(path)


def _published(db) -> dict:
    con = warehouse.connect(db, read_only=True)
    try:
        return {
            "runs": warehouse.read_table(
                con, "SELECT run_id, status FROM ledger.runs ORDER BY started_at"
            ).rows(),
            "effects": warehouse.read_table(
                con, "SELECT contract_id, outcome, estimate FROM marts.effects ORDER BY ALL"
            ).rows(),
            "payment": warehouse.read_table(
                con, "SELECT contract_id, amount FROM marts.payments_proposed ORDER BY ALL"
            ).rows(),
            "staging": warehouse.scalar(con, "SELECT count(*) FROM staging.sick_leave_spells"),
            "raw": warehouse.scalar(con, "SELECT count(*) FROM raw.sick_leave_spells"),
            "deliveries": warehouse.read_table(
                con, "SELECT source, file, sha256, status FROM raw.deliveries ORDER BY ALL"
            ).rows(),
        }
    finally:
        con.close()


def _reject_spells(src, dst):
    shutil.copytree(src, dst)
    f = dst / "sick_leave.csv"
    lines = f.read_text().splitlines()
    bad = [lines[0]] + [
        ln.rsplit(",", 1)[0] + ",60" if i % 10 == 0 else ln for i, ln in enumerate(lines[1:])
    ]
    f.write_text("\n".join(bad) + "\n")
    return dst


def _measured(demo_warehouse, tmp_path):
    """A copy of the session's measured example (tests/conftest.py): warehouse, report."""
    shutil.copy(demo_warehouse.warehouse, tmp_path / "w.duckdb")
    shutil.copytree(demo_warehouse.reports, tmp_path / "r")
    return tmp_path / "w.duckdb"


def test_rejected_delivery_after_a_good_run_leaves_the_published_state(
    example_plan, deliveries, demo_warehouse, tmp_path
):
    db = _measured(demo_warehouse, tmp_path)
    first = demo_warehouse.result
    before = _published(db)
    report_before = (tmp_path / "r" / "report.json").read_bytes()
    bad = _reject_spells(deliveries, tmp_path / "bad")
    with pytest.raises(DeliveryRejected):
        run(example_plan, db, bad, tmp_path / "r", progress=_quiet)
    after = _published(db)
    assert after["effects"] == before["effects"] and after["payment"] == before["payment"]
    assert after["staging"] == before["staging"] > 0 and after["raw"] == before["raw"]
    assert after["deliveries"] == before["deliveries"]  # the published run's files
    assert (tmp_path / "r" / "report.json").read_bytes() == report_before
    assert after["runs"][0] == (first.run_id, "published")
    assert after["runs"][1][1] == "rejected"
    con = warehouse.connect(db, read_only=True)
    try:
        # The ledger keeps the rejected file; its quarantine is inspectable by run.
        statuses = warehouse.read_table(
            con, "SELECT file, status FROM ledger.deliveries ORDER BY ALL"
        ).rows()
        assert ("sick_leave.csv", "rejected") in statuses
        assert (
            warehouse.scalar(
                con,
                "SELECT count(*) FROM quarantine.by_run "
                "WHERE run_id = ? AND rule = 'unknown_extent'",
                [after["runs"][1][0]],
            )
            > 0
        )
    finally:
        con.close()


def test_failure_in_the_second_source_leaves_the_first_untouched(
    example_plan, deliveries, demo_warehouse, tmp_path
):
    db = _measured(demo_warehouse, tmp_path)
    before = _published(db)
    d = tmp_path / "d"
    shutil.copytree(deliveries, d)
    roster = (d / "roster.csv").read_text().splitlines()
    (d / "roster.csv").write_text("\n".join(roster[:-50]) + "\n")  # a changed roster ...
    (d / "sick_leave.csv").write_text((d / "sick_leave.csv").read_text().replace(",", ";"))
    with pytest.raises(Exception, match="sick_leave.csv"):  # ... then a broken spells file
        run(example_plan, db, d, tmp_path / "r", progress=_quiet)
    after = _published(db)
    assert {k: v for k, v in after.items() if k != "runs"} == {
        k: v for k, v in before.items() if k != "runs"
    }


def test_plan_changed_during_a_run_is_refused(example_plan, deliveries, tmp_path):
    from dataclasses import replace

    from utfall.pipeline import key_for, start_run

    db = tmp_path / "w.duckdb"
    con = new_warehouse(db)
    current = start_run(con, example_plan, key_for(db))
    edited = replace(example_plan, hash="sha256:" + "0" * 64)
    with pytest.raises(WarehouseError, match="the plan changed during the run"):
        runs.require_running(con, current, edited.hash)
    con.close()


def _second_contract(tmp_path, example_plan):
    """The example plan under another contract id, with other units and outcome terms."""
    data = json.loads(json.dumps(example_plan.data))
    data["contract"]["id"] = "andrakommun-korttidssjuk-2025"
    data["payment"]["rules"][1]["amount"] = "900000.00"
    data["cohort"]["treated_units"] = data["cohort"]["treated_units"][:8]
    import yaml

    path = tmp_path / "second.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return load_plan(path)


def test_two_contracts_in_one_warehouse_give_the_reports_each_gives_alone(
    example_plan, deliveries, demo_warehouse, tmp_path
):
    second = _second_contract(tmp_path, example_plan)
    alone = {  # the example alone: the session's measured example (tests/conftest.py)
        example_plan.contract_id: {
            n: (demo_warehouse.reports / n).read_bytes() for n in ("report.json", "report.html")
        }
    }
    for plan in (second,):
        out = tmp_path / "alone" / plan.contract_id
        alone_db = empty_warehouse_file(tmp_path / f"alone-{plan.contract_id}.duckdb")
        run(plan, alone_db, deliveries, out, progress=_quiet)
        alone[plan.contract_id] = {
            n: (out / n).read_bytes() for n in ("report.json", "report.html")
        }
    # The shared warehouse starts as the example measured alone (a copy of the session's
    # run); then the second contract and the example again: interleaved re-runs too.
    db = tmp_path / "shared.duckdb"
    shutil.copy(demo_warehouse.warehouse, db)
    for plan in (second, example_plan):
        out = tmp_path / "shared" / plan.contract_id
        run(plan, db, deliveries, out, progress=_quiet)
    for plan in (example_plan, second):
        out = tmp_path / "shared" / plan.contract_id
        for n in ("report.json", "report.html"):
            assert (out / n).read_bytes() == alone[plan.contract_id][n], (plan.contract_id, n)
    published = _published(db)
    assert {c for c, *_ in published["effects"]} == {example_plan.contract_id, second.contract_id}
    con = warehouse.connect(db, read_only=True)
    try:
        # Each contract keeps exactly its own published run's rows.
        per_contract = warehouse.read_table(
            con,
            "SELECT contract_id, count(DISTINCT run_id) AS runs, count(*) AS n "
            "FROM work.staging_sick_leave_spells GROUP BY ALL ORDER BY ALL",
        ).rows()
        assert sorted((c, r) for c, r, _ in per_contract) == sorted(
            [(example_plan.contract_id, 1), (second.contract_id, 1)]
        )
    finally:
        con.close()


def test_missing_plan_unit_in_roster_is_an_error_or_a_listed_warning(
    example_plan, deliveries, tmp_path
):
    d = tmp_path / "d"
    shutil.copytree(deliveries, d)
    f = d / "roster.csv"
    f.write_text(f.read_text().replace(",HEMTJ-01,", ",hemtj-01,"))
    empty_warehouse_file(tmp_path / "w.duckdb")
    with pytest.raises(CohortError, match=r"'HEMTJ-01' does not occur in the roster.*'hemtj-01'"):
        run(example_plan, tmp_path / "w.duckdb", d, tmp_path / "r", progress=_quiet)
    assert not (tmp_path / "r").exists()
    from dataclasses import replace

    data = json.loads(json.dumps(example_plan.data))
    data["cohort"]["unit_check"] = "warn"
    warned = replace(example_plan, data=data)
    result = run(warned, tmp_path / "w.duckdb", d, tmp_path / "r", progress=_quiet)
    report = json.loads(result.report_paths["report.json"].read_text())
    assert any("HEMTJ-01 does not occur in the roster" in w for w in report["warnings"])
    assert any("hemtj-01" in w and "does not name" in w for w in report["warnings"])


def test_payment_and_report_refuse_effects_of_another_plan(example_plan, deliveries, tmp_path):
    """Effects stored under one plan hash never pay or report under another."""
    from dataclasses import replace

    from utfall import metrics
    from utfall.cohort import check_cohort
    from utfall.ingest import ingest_source
    from utfall.pipeline import (
        assemble_report,
        estimate_effects,
        key_for,
        propose_payment,
        start_run,
    )
    from utfall.validate import validate_source

    db = tmp_path / "w.duckdb"
    con = new_warehouse(db)
    key = key_for(db)
    current = start_run(con, example_plan, key)
    for s in example_plan.sources:
        ingest_source(con, example_plan, current, s["name"], deliveries, key)
    validate_source(con, example_plan, current, "roster")
    check_cohort(con, example_plan, current)
    validate_source(con, example_plan, current, "sick_leave")
    metrics.build_outcome_panel(con, example_plan, current)
    estimate_effects(con, example_plan, current)
    edited = replace(example_plan, hash="sha256:" + "1" * 64)
    with pytest.raises(WarehouseError, match="computed under plan"):
        propose_payment(con, edited, current)
    propose_payment(con, example_plan, current)
    with pytest.raises(WarehouseError, match="was made with plan"):
        assemble_report(con, edited, current)
    with pytest.raises(WarehouseError, match="the plan changed during the run"):
        runs.publish(con, current, edited.hash)
    con.close()
