"""`utfall verify`: a copied package verifies; each kind of tampering is named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest
from validator_helpers import fresh_copy

from utfall import cli, decisions, signing
from utfall.replication import (
    PackageError,
    manifest_digest,
    sha256_file,
    verify_package,
    write_parquet,
)
from utfall.warehouse import connect

SPELLS = "inputs/staging_sick_leave_spells.parquet"


@pytest.fixture
def pkg(tmp_path: Path) -> tuple[Path, Path]:
    return fresh_copy(tmp_path)


def _problems(package: Path, warehouse: Path | None = None) -> list[str]:
    con = connect(warehouse, read_only=True) if warehouse else None
    try:
        return verify_package(package, con=con).problems
    finally:
        if con is not None:
            con.close()


def _one_naming(problems: list[str], *words: str) -> str:
    hits = [p for p in problems if all(w in p for w in words)]
    assert hits, f"no problem names {words}: {problems}"
    return hits[0]


def test_copied_package_verifies_with_its_ledger(pkg, capsys):
    package, warehouse = pkg
    assert _problems(package, warehouse) == []
    assert cli.main(["verify", str(package), "--warehouse", str(warehouse)]) == 0
    out = capsys.readouterr().out
    assert "verified: every number and hash matches" in out
    assert "report.json: every number matches the recomputation" in out


def test_verify_needs_neither_dagster_nor_the_warehouse(pkg):
    package, _ = pkg
    code = (
        "import sys; from pathlib import Path; from utfall.replication import verify_package; "
        f"v = verify_package(Path({str(package)!r})); "
        "assert v.ok, v.problems; "
        "heavy = ('dagster', 'great_expectations'); "
        "assert not [m for m in sys.modules if m.split('.')[0] in heavy]"
        "; print('clean')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "clean" in out.stdout


def test_one_changed_input_byte(pkg):
    package, _ = pkg
    path = package / SPELLS
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    _one_naming(_problems(package), SPELLS, "sha256", "changed after")


def test_changed_inputs_with_a_matching_manifest_are_recomputed(pkg):
    """A forger who drops rows and fixes the manifest's hashes: the recomputed numbers no
    longer match report.json, and the ledger knows no such manifest."""
    package, warehouse = pkg
    spells = pl.read_parquet(package / SPELLS)
    write_parquet(spells.filter(pl.int_range(pl.len()) % 10 != 3), package / SPELLS)
    manifest = json.loads((package / "manifest.json").read_text(encoding="utf-8"))
    manifest["package_files"][SPELLS] = sha256_file(package / SPELLS)
    (package / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    problems = _problems(package, warehouse)
    _one_naming(problems, "report.json $.effects[0].estimate", "recomputed")
    _one_naming(problems, "context.json $.reconciliation", "loaded")
    _one_naming(problems, "ledger: no publication of this package")
    assert not any(SPELLS in p and "sha256" in p for p in problems)


def test_changed_plan(pkg):
    package, _ = pkg
    plan = next((package / "plan").iterdir())
    plan.write_text(
        plan.read_text(encoding="utf-8").replace("confidence: 0.95", "confidence: 0.90"),
        encoding="utf-8",
    )
    problems = _problems(package)
    _one_naming(problems, f"plan/{plan.name}", "sha256")
    _one_naming(problems, f"plan/{plan.name}", "plan hash", "the plan was changed")


def test_number_in_report_json(pkg):
    package, _ = pkg
    path = package / "report.json"
    report = json.loads(path.read_text(encoding="utf-8"))
    true_total = report["payment"]["total"]
    report["payment"]["total"] = "9999999.00"
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    problems = _problems(package)
    _one_naming(problems, "report.json: sha256")
    hit = _one_naming(problems, "report.json $.payment.total")
    assert f'recomputed "{true_total}", found "9999999.00"' in hit


def test_edited_html(pkg):
    package, _ = pkg
    path = package / "report.html"
    html = path.read_text(encoding="utf-8")
    path.write_text(html.replace("</h1>", " (approved)</h1>", 1), encoding="utf-8")
    problems = _problems(package)
    _one_naming(problems, "report.html: sha256")
    _one_naming(problems, "report.html: differs from the HTML rendered", "(approved)")


def test_removed_file(pkg):
    package, _ = pkg
    (package / "context.json").unlink()
    _one_naming(_problems(package), "context.json: listed in manifest.json but missing")


def test_added_file(pkg):
    package, _ = pkg
    (package / "inputs" / "extra.parquet").write_bytes(b"PAR1")
    _one_naming(_problems(package), "inputs/extra.parquet: not in manifest.json")


def test_ledger_entry_edited_or_deleted(pkg):
    package, warehouse = pkg
    con = duckdb.connect(str(warehouse))
    con.execute(
        "UPDATE ledger.chain SET payload_json = replace(payload_json, '\"version\":1', "
        "'\"version\":7') WHERE seq = 1"
    )
    con.close()
    _one_naming(_problems(package, warehouse), "ledger.chain entry 1 (run", "content edited")
    con = duckdb.connect(str(warehouse))
    con.execute("DELETE FROM ledger.chain WHERE seq = 1")
    con.close()
    problems = _problems(package, warehouse)
    _one_naming(problems, "entries at the end were deleted")
    _one_naming(problems, "ledger: no publication of this package")


def test_wrong_signature(pkg, tmp_path, capsys):
    package, _ = pkg
    key, _, _ = signing.keygen(tmp_path / "validator.key")
    sig_path = decisions.sign_package(package, key)
    assert _problems(package) == []
    other = signing.Signer(signing.keygen(tmp_path / "other.key")[0])
    mine = signing.Signer(key).fingerprint
    assert cli.main(["verify", str(package), "--signer", mine]) == 0
    assert cli.main(["verify", str(package), "--signer", other.fingerprint]) == 1
    assert f"no valid signature of manifest.json by {other.fingerprint}" in capsys.readouterr().out
    sig = json.loads(sig_path.read_text(encoding="utf-8"))
    sig["signature"] = other.sign(b"something else")
    sig_path.write_text(json.dumps(sig), encoding="utf-8")
    _one_naming(_problems(package), f"signatures/{sig_path.name}", "does not match manifest.json")


def test_signature_breaks_when_the_manifest_changes(pkg, tmp_path):
    package, _ = pkg
    key, _, _ = signing.keygen(tmp_path / "validator.key")
    sig_path = decisions.sign_package(package, key)
    manifest = json.loads((package / "manifest.json").read_text(encoding="utf-8"))
    before = manifest_digest(manifest)
    manifest["version"] = 2
    (package / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert manifest_digest(manifest) != before
    _one_naming(_problems(package), f"signatures/{sig_path.name}", "does not match")


def test_cli_exit_codes(pkg, tmp_path, capsys):
    package, _ = pkg
    (package / "report.html").write_text("<html></html>\n", encoding="utf-8")
    assert cli.main(["verify", str(package)]) == 1
    out = capsys.readouterr().out
    assert "DIFFERS: report.html: sha256" in out and "NOT VERIFIED" in out
    assert cli.main(["verify", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("utfall: error:") and "nowhere" in err and "\n" not in err
    (tmp_path / "notpkg").mkdir()
    with pytest.raises(PackageError, match="manifest.json: missing"):
        verify_package(tmp_path / "notpkg")
    # A report folder written before replication packages existed.
    (tmp_path / "notpkg" / "manifest.json").write_text('{"files": {}}', encoding="utf-8")
    with pytest.raises(PackageError, match="written before replication packages"):
        verify_package(tmp_path / "notpkg")
