"""The replication package: complete, pseudonymised, deterministic, versioned."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from validator_helpers import fresh_copy, published

import utfall
from utfall import personnummer, pipeline, recompute, report
from utfall.cli import EXAMPLE_PLAN
from utfall.decisions import decide
from utfall.plan import load_plan
from utfall.replication import (
    _HEADLINE,
    locked_packages,
    package_files,
    retire,
    sha256_file,
    verify_package,
    write_package,
)
from utfall.signing import keygen
from utfall.warehouse import chain, connect, runs

IDENTITY = re.compile(r"(?<![0-9A-Za-z])(\d{6}|\d{8})[-+]?\d{4}(?![0-9A-Za-z])")


def _identity_numbers(texts: list[str]) -> list[str]:
    found = [m.group(0) for t in texts for m in IDENTITY.finditer(t)]
    if not found:
        return []
    checked = personnummer.check(pl.Series(found), 2025)
    return [f for f, p in zip(found, checked["problem"], strict=True) if p is None]


def _manifest(package: Path) -> dict:
    return json.loads((package / "manifest.json").read_text(encoding="utf-8"))


def test_package_contents(tmp_path):
    package, warehouse = fresh_copy(tmp_path)
    m = _manifest(package)
    files = package_files(package)
    assert set(m["package_files"]) == set(files) - {"manifest.json"}
    assert all(sha256_file(package / f) == m["package_files"][f] for f in m["package_files"])
    assert {"report.json", "report.html", "context.json", "data_docs/index.html"} <= set(files)
    assert m["inputs_tables"] == {
        "employee_roster": "inputs/staging_employee_roster.parquet",
        "sick_leave_spells": "inputs/staging_sick_leave_spells.parquet",
    }
    assert (package / m["plan_file"]).read_bytes() == EXAMPLE_PLAN.read_bytes()
    assert m["plan_hash"] == load_plan(EXAMPLE_PLAN).hash
    assert m["version"] == 1 and m["previous"] is None and m["changes"] == []
    assert m["code_version"] == utfall.__version__ and m["git_commit"] == report.git_commit()
    assert m["git_dirty"] in (True, False, None)
    assert m["locked_packages"]["duckdb"] == "2.0.1"
    assert m["locked_packages"]["cryptography"] == "50.0.2"
    assert m["locked_packages"] == locked_packages()
    con = connect(warehouse, read_only=True)
    run = runs.published_run(con, m["contract_id"])
    assert m["run_id"] == run["run_id"] and m["key_fingerprint"] == run["key_fingerprint"]
    # The ledger's publication entry names this manifest.
    (entry,) = chain.entries(con, m["contract_id"])
    con.close()
    assert entry.payload["manifest_sha256"] == verify_package(package).digest
    # Inputs: every valid row, with pseudonyms and no identity-number column.
    context = json.loads((package / "context.json").read_text(encoding="utf-8"))
    loaded = {r["source"]: r["loaded"] for r in context["reconciliation"]}
    for kind, rel in m["inputs_tables"].items():
        frame = pl.read_parquet(package / rel)
        assert "person_id" in frame.columns and "personnummer" not in frame.columns
        for source, n in frame.group_by("source").len().iter_rows():
            assert loaded[source] == n, (kind, source)


def test_no_identity_number_in_the_package(tmp_path):
    package, _ = fresh_copy(tmp_path)
    texts = []
    for rel in package_files(package):
        path = package / rel
        if rel.endswith(".parquet"):
            frame = pl.read_parquet(path)
            for c, t in frame.schema.items():
                if t == pl.String:
                    texts += frame[c].drop_nulls().to_list()
        elif rel.endswith((".json", ".html", ".yaml", ".csv", ".css")):
            texts.append(path.read_text(encoding="utf-8"))
    assert texts and _identity_numbers(texts) == []
    # The scan itself finds a valid personnummer (so the test can fail).
    assert _identity_numbers(["x 19811218-9876 y"]) == ["19811218-9876"]


def test_same_run_same_package_bytes(tmp_path):
    """The published run's package written again, twice: byte-identical files, and the
    manifest differs only in its time stamp and the previous publication."""
    package, warehouse = fresh_copy(tmp_path)
    plan = load_plan(EXAMPLE_PLAN)
    con = connect(warehouse)
    try:
        info = runs.published_run(con, plan.contract_id)
        run = runs.Run(info["run_id"], plan.contract_id)
        outs = []
        for name in ("a", "b"):
            root = tmp_path / name
            parts = pipeline.report_inputs(con, plan, run)
            doc = recompute.report_document(
                plan, parts["context"], parts["panel"], parts["effects"], parts["payment"]
            )
            report.write_report(doc, root, run_id=run.run_id)
            pipeline.write_data_docs(con, plan, run, root)
            write_package(con, plan, run, root, parts, package)
            outs.append(root)
    finally:
        con.close()
    for root in outs:
        assert package_files(root) == package_files(package)
        for rel in package_files(package):
            if rel != "manifest.json":
                assert (root / rel).read_bytes() == (package / rel).read_bytes(), rel
        volatile = ("generated_at", "previous")
        a, b = _manifest(root), _manifest(package)
        assert {k: v for k, v in a.items() if k not in volatile} == {
            k: v for k, v in b.items() if k not in volatile
        }
        assert a["previous"]["manifest_sha256"] == verify_package(package).digest


def _fake_package(root: Path, version: int, decided: bool) -> Path:
    root.mkdir(parents=True)
    (root / "manifest.json").write_text(json.dumps({"version": version, "run_id": "r"}))
    if decided:
        (root / "decisions").mkdir()
        (root / "decisions" / "final.json").write_text("{}")
    return root


@pytest.mark.parametrize(
    "old_version, decided, archived",
    [(1, False, None), (1, True, "v1"), (1, False, None), (2, False, "v2")],
)
def test_a_replaced_package_is_kept_when_issued(tmp_path, old_version, decided, archived):
    current = tmp_path / "reports" / "c1"
    old = _fake_package(tmp_path / "reports" / ".c1.old", old_version, decided)
    kept = retire(old, current, new_version=1)
    assert not old.exists()
    if archived is None:
        assert kept is None
    else:
        assert kept == tmp_path / "reports" / "c1.versions" / archived
        assert json.loads((kept / "manifest.json").read_text())["version"] == old_version


@pytest.mark.slow
def test_rerun_into_a_fresh_warehouse_gives_the_same_package(tmp_path):
    src = published()
    plan = load_plan(EXAMPLE_PLAN)
    pipeline.run(
        plan, tmp_path / "w.duckdb", src / "deliveries", tmp_path / "rep", progress=lambda m: None
    )
    assert package_files(tmp_path / "rep") == package_files(src / "report")
    for rel in package_files(src / "report"):
        if rel != "manifest.json":
            assert (tmp_path / "rep" / rel).read_bytes() == (src / "report" / rel).read_bytes()
    a, b = _manifest(tmp_path / "rep"), _manifest(src / "report")
    volatile = ("generated_at", "run_id")
    assert {k: v for k, v in a.items() if k not in volatile} == {
        k: v for k, v in b.items() if k not in volatile
    }


@pytest.mark.slow
def test_corrected_delivery_makes_a_new_version(tmp_path):
    """v1 approved for `final`; a corrected delivery gives v2 with a summary of changes, and
    v1 stays as issued (decision included) and still verifies against the ledger."""
    package, warehouse = fresh_copy(tmp_path)
    plan = load_plan(EXAMPLE_PLAN)
    key = keygen(tmp_path / "v.key")[0]
    con = connect(warehouse)
    try:
        decide(package, key, con, decision="approved", period="final")
    finally:
        con.close()
    v1_files = {rel: (package / rel).read_bytes() for rel in package_files(package)}
    deliveries = tmp_path / "deliveries"
    shutil.copytree(published() / "deliveries", deliveries)
    spells = deliveries / "sick_leave.csv"
    lines = spells.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for i, line in enumerate(lines) if i == 0 or i % 25 != 7]  # 4 % fewer spells
    spells.write_text("".join(kept), encoding="utf-8")
    pipeline.run(plan, warehouse, deliveries, package, progress=lambda m: None)

    m = _manifest(package)
    assert m["version"] == 2 and m["previous"]["version"] == 1
    assert any(c.startswith("input sick_leave.csv: re-delivered") for c in m["changes"]), m
    # The headline numbers come first: effects, payment, reconciliation.
    paths = [c.split(": ")[0] for c in m["changes"][1:]]
    n_head = sum(1 for p in paths if _HEADLINE.match(p))
    assert n_head and all(_HEADLINE.match(p) for p in paths[:n_head]), paths
    head = paths[:n_head]
    assert "$.effects[0].estimate" in head and "$.reconciliation[1].loaded" in head, head
    old_total = json.loads(v1_files["report.json"])["payment"]["total"]
    new_total = json.loads((package / "report.json").read_text())["payment"]["total"]
    assert (old_total != new_total) == ("$.payment.total" in head)
    v1 = package.parent / "package.versions" / "v1"
    assert {rel: (v1 / rel).read_bytes() for rel in package_files(v1)} == v1_files
    con = connect(warehouse)
    try:
        assert verify_package(v1, con=con).problems == []
        assert verify_package(package, con=con).problems == []
        with pytest.raises(Exception, match="already approved"):
            decide(package, key, con, decision="approved", period="final")
        with pytest.raises(Exception, match="version 1 of .* is superseded by version 2"):
            decide(v1, key, con, decision="approved", period="interim-2025")
        assert [e.kind for e in chain.entries(con, plan.contract_id)] == [
            "run",
            "decision",
            "payment",
            "run",
        ]
    finally:
        con.close()
