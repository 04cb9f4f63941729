"""Keys, signatures, approve / reject and the payment instruction."""

from __future__ import annotations

import csv
import json
import stat
from pathlib import Path

import pytest
from validator_helpers import fresh_copy

from utfall import cli, signing
from utfall.decisions import DecisionRefused, decide
from utfall.replication import verify_package
from utfall.warehouse import chain, connect


@pytest.fixture
def pkg(tmp_path: Path) -> tuple[Path, Path]:
    return fresh_copy(tmp_path)


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return signing.keygen(tmp_path / "rise.key")[0]


def _utfall(*args: str) -> int:
    return cli.main([str(a) for a in args])


def test_keygen_makes_a_private_key_only_its_owner_reads(tmp_path, capsys):
    assert _utfall("keygen", tmp_path / "v.key") == 0
    out = capsys.readouterr().out
    mode = stat.S_IMODE((tmp_path / "v.key").stat().st_mode)
    assert mode == 0o600
    fp = signing.load_public_fingerprint(tmp_path / "v.key.pub")
    assert fp == signing.Signer(tmp_path / "v.key").fingerprint and fp in out
    assert fp.startswith("ed25519:") and len(fp) == len("ed25519:") + 32
    assert _utfall("keygen", tmp_path / "v.key") == 2  # never overwrites a key
    assert "already exists" in capsys.readouterr().err


def test_signature_round_trip_and_canonical_bytes(key):
    s = signing.Signer(key)
    data = signing.canonical({"b": 1, "a": [1.5, "å"]})
    assert data == '{"a":[1.5,"å"],"b":1}'.encode()
    sig = s.sign(data)
    assert signing.verify(s.public_key, sig, data)
    assert not signing.verify(s.public_key, sig, data + b" ")
    assert not signing.verify(s.public_key, "not base64!", data)
    assert not signing.verify("AAAA", sig, data)


@pytest.mark.parametrize(
    "content, message",
    [(b"", "not an unencrypted PEM private key"), (None, "cannot read the key")],
)
def test_bad_key_file_is_one_line(pkg, tmp_path, capsys, content, message):
    package, _ = pkg
    bad = tmp_path / "bad.key"
    if content is not None:
        bad.write_bytes(content)
    assert _utfall("sign", package, "--key", bad) == 2
    err = capsys.readouterr().err
    assert message in err and "bad.key" in err and err.count("\n") == 1


def test_public_key_cannot_sign(pkg, key, capsys):
    package, _ = pkg
    assert _utfall("sign", package, "--key", key.with_name("rise.key.pub")) == 2
    assert "not an unencrypted PEM private key" in capsys.readouterr().err


def test_approve_writes_the_payment_instruction(pkg, key, capsys):
    package, warehouse = pkg
    assert _utfall("sign", package, "--key", key) == 0
    assert not (package / "payment_instruction.csv").exists()
    assert (
        _utfall("approve", package, "--key", key, "--period", "final", "--warehouse", warehouse)
        == 0
    )
    assert "payment instruction:" in capsys.readouterr().out
    report = json.loads((package / "report.json").read_text(encoding="utf-8"))
    manifest = json.loads((package / "manifest.json").read_text(encoding="utf-8"))
    rows = list(csv.DictReader((package / "payment_instruction.csv").open(encoding="utf-8")))
    assert len(rows) == 1
    row = rows[0]
    assert row["contract_id"] == manifest["contract_id"] and row["period"] == "final"
    assert row["amount"] == report["payment"]["total"] and row["currency"] == "SEK"
    assert row["payee"] == report["contract"]["parties"]["provider"]
    assert row["report_sha256"] == manifest["package_files"]["report.json"]
    decision = json.loads((package / "decisions" / "final.json").read_text(encoding="utf-8"))
    assert row["decision_reference"] == decision["reference"]
    assert decision["signer"] == signing.Signer(key).fingerprint
    js = json.loads((package / "payment_instruction.json").read_text(encoding="utf-8"))
    assert js["instructions"][0]["amount"] == row["amount"]
    # The package still verifies, ledger included; the ledger holds decision and payment.
    con = connect(warehouse, read_only=True)
    assert verify_package(package, con=con).problems == []
    kinds = [e.kind for e in chain.entries(con, manifest["contract_id"])]
    con.close()
    assert kinds == ["run", "decision", "payment"]


def test_second_approval_of_a_period_is_refused_other_periods_are_not(pkg, key, tmp_path):
    package, warehouse = pkg
    con = connect(warehouse)
    try:
        decide(package, key, con, decision="approved", period="interim-2025")
        other = signing.keygen(tmp_path / "second.key")[0]
        with pytest.raises(DecisionRefused, match="'interim-2025': already approved"):
            decide(package, other, con, decision="approved", period="interim-2025")
        decide(package, key, con, decision="approved", period="final")
    finally:
        con.close()
    rows = list(csv.DictReader((package / "payment_instruction.csv").open(encoding="utf-8")))
    assert [r["period"] for r in rows] == ["final", "interim-2025"]


def test_reject_needs_a_reason_and_pays_nothing(pkg, key, capsys):
    package, warehouse = pkg
    args = ["reject", package, "--key", key, "--period", "final", "--warehouse", warehouse]
    assert _utfall(*args, "--reason", "  ") == 2
    assert "a rejection must say why" in capsys.readouterr().err
    assert _utfall(*args, "--reason", "pre-trend in FSK units") == 0
    assert not (package / "payment_instruction.csv").exists()
    decision = json.loads((package / "decisions" / "final.json").read_text(encoding="utf-8"))
    assert decision["decision"] == "rejected" and decision["reason"] == "pre-trend in FSK units"
    # The same package cannot then be approved for that period: a new version must come.
    assert _utfall("approve", package, "--key", key, "--warehouse", warehouse) == 2
    assert "was already rejected" in capsys.readouterr().err


def test_a_package_that_does_not_verify_is_not_approved(pkg, key, capsys):
    package, warehouse = pkg
    (package / "report.html").write_text("<p>all good</p>\n", encoding="utf-8")
    assert _utfall("approve", package, "--key", key, "--warehouse", warehouse) == 2
    err = capsys.readouterr().err
    assert "does not verify, so it cannot be approved" in err and "report.html" in err
    assert not (package / "decisions").exists()
    con = connect(warehouse, read_only=True)
    assert [e.kind for e in chain.entries(con)] == ["run"]
    con.close()
    assert _utfall("sign", package, "--key", key) == 2


def test_bad_period_name(pkg, key, capsys):
    package, warehouse = pkg
    assert (
        _utfall("approve", package, "--key", key, "--period", "../x", "--warehouse", warehouse) == 2
    )
    assert "--period '../x'" in capsys.readouterr().err


def test_edited_decision_and_instruction_are_detected(pkg, key):
    package, warehouse = pkg
    con = connect(warehouse)
    try:
        decide(package, key, con, decision="approved", period="final")
    finally:
        con.close()
    path = package / "payment_instruction.csv"
    original = path.read_text(encoding="utf-8")
    report = json.loads((package / "report.json").read_text(encoding="utf-8"))
    path.write_text(original.replace(report["payment"]["total"], "9999999.00"), encoding="utf-8")
    problems = verify_package(package).problems
    assert any(p.startswith("payment_instruction.csv: differs") for p in problems), problems
    path.write_text(original, encoding="utf-8")
    dpath = package / "decisions" / "final.json"
    d = json.loads(dpath.read_text(encoding="utf-8"))
    d["amount"] = "9999999.00"
    dpath.write_text(json.dumps(d), encoding="utf-8")
    problems = verify_package(package).problems
    assert any("decisions/final.json: the decision's signature" in p for p in problems), problems
    # Deleting the decision leaves an instruction without approval: named too.
    dpath.unlink()
    problems = verify_package(package).problems
    assert any("payment_instruction.csv: present, but no approved decision" in p for p in problems)
    # Removing every trace of the approval from the package: the ledger still names it.
    (package / "payment_instruction.csv").unlink()
    (package / "payment_instruction.json").unlink()
    assert verify_package(package).problems == []  # an undecided package, as far as it shows
    con = connect(warehouse, read_only=True)
    try:
        problems = verify_package(package, con=con).problems
    finally:
        con.close()
    assert any(
        "ledger.chain entry 2 records the decision approved for period 'final'" in p
        for p in problems
    ), problems
