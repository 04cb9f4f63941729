"""The validator's sign-off: signatures, approve / reject decisions, the payment instruction.

* `sign_package`: `signatures/<key>.json` holds the Ed25519 signature of the manifest's
  canonical bytes (`replication.manifest_digest` is their sha256) and the public key.
* `decide`: a decision (approved or rejected, per named period, e.g. `interim-2025` or
  `final`) is `decisions/<period>.json`: the contract, period, decision, reason, package
  version, report and manifest sha256, the signer's fingerprint and public key and the
  time, signed over its canonical bytes. The same decision is entered in the warehouse
  ledger (`ledger.chain`, kind `decision`), and an approval also a `payment` entry; both
  commit in one transaction. A package that does not verify is refused; so is a second
  approval of a contract's period (whatever version), and a second decision on the same
  package and period. With payment periods in the plan, a package is approved only for the
  period it was measured for (and not when that measurement was provisional); the approval
  records the period and each rule's amount, which later periods read as paid before
  (`utfall.payments.periods`).
* Only approved decisions make `payment_instruction.csv` and `.json` (one row per
  approved period of the package: contract, period, payer, payee, amount, currency,
  report sha256, decision reference), rebuilt from the signed decision files, so
  `verify` can tell an edited instruction by its bytes.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import duckdb

from utfall import signing
from utfall.errors import UserError
from utfall.payments import periods
from utfall.warehouse import chain

DECISIONS = "decisions"
SIGNATURES = "signatures"
INSTRUCTION_FIELDS = (
    "contract_id",
    "period",
    "payer",
    "payee",
    "amount",
    "currency",
    "report_sha256",
    "manifest_sha256",
    "package_version",
    "decision_reference",
    "approved_at",
    "approved_by",
)
_PERIOD = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class DecisionRefused(UserError):
    """A sign-off that must not be recorded (package does not verify, period decided)."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def _require_verified(package: Path, con: duckdb.DuckDBPyConnection | None, what: str):
    from utfall.replication import verify_package

    v = verify_package(package, con=con)
    if not v.ok:
        raise DecisionRefused(
            f"{package}: does not verify, so it cannot be {what} "
            f"({len(v.problems)} problem(s), first: {v.problems[0]}); run `utfall verify`"
        )
    return v


def sign_package(package: Path, key_path: Path) -> Path:
    """Verify the package, then write the key's signature of its manifest."""
    signer = signing.Signer(key_path)
    v = _require_verified(Path(package), None, "signed")
    assert v.manifest is not None
    body = {
        "format": 1,
        "signed_file": "manifest.json",
        "manifest_sha256": v.digest,
        "public_key": signer.public_key,
        "fingerprint": signer.fingerprint,
        "signed_at": _now(),
        "signature": signer.sign(signing.canonical(v.manifest)),
    }
    path = Path(package) / SIGNATURES / f"{signer.fingerprint.replace(':', '-')}.json"
    _write_atomic(path, _dumps(body))
    return path


def _decision_body(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != "signature"}


def decide(
    package: Path,
    key_path: Path,
    con: duckdb.DuckDBPyConnection,
    *,
    decision: str,
    period: str | None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Record an approval or rejection of `package` for `period` (see module docstring).
    `period` None: the payment period the package was measured for, else `final`.
    Returns the signed decision document."""
    if decision not in ("approved", "rejected"):
        raise ValueError(decision)
    if period is not None and not _PERIOD.match(period):
        raise DecisionRefused(
            f"--period {period!r}: use lower-case letters, digits, '-' and '_' "
            "(e.g. interim-2025, final)"
        )
    if decision == "rejected" and not (reason and reason.strip()):
        raise DecisionRefused("--reason: a rejection must say why")
    package = Path(package)
    signer = signing.Signer(key_path)
    v = _require_verified(package, con, decision)
    manifest = v.manifest
    assert manifest is not None
    assert v.payment is not None and v.plan is not None
    if period is None:
        period = (v.payment.get("period") or {}).get("name") or "final"
    wrong_period = periods.decision_problem(v.payment, period, decision)
    if wrong_period:
        raise DecisionRefused(f"{package}: {wrong_period}")
    contract = manifest["contract_id"]
    report_sha = manifest["package_files"]["report.json"]
    published = [e for e in chain.entries(con, contract) if e.kind == "run"]
    if (
        decision == "approved"
        and published
        and published[-1].payload.get("report_sha256") != (report_sha)
    ):
        raise DecisionRefused(
            f"{package}: version {manifest['version']} of {contract} is superseded by version "
            f"{published[-1].payload.get('version')} (run {published[-1].payload.get('run_id')}); "
            "only the current version can be approved"
        )
    for e in chain.entries(con, contract):
        if e.kind != "decision" or e.payload.get("period") != period:
            continue
        if e.payload.get("decision") == "approved":
            raise DecisionRefused(
                f"{contract}, period {period!r}: already approved (version "
                f"{e.payload.get('version')}, {e.payload.get('reference')}, by "
                f"{e.payload.get('signer')}); a period is approved once"
            )
        if e.payload.get("manifest_sha256") == v.digest:
            raise DecisionRefused(
                f"{contract}, period {period!r}: this package (version {manifest['version']}) "
                f"was already {e.payload.get('decision')} ({e.payload.get('reference')}); "
                "a corrected delivery makes a new version to decide on"
            )
    # From the recomputation and the package's plan, not from report.json's layout.
    payment = v.payment
    parties = v.plan.data.get("parties") or {}
    body = {
        "format": 1,
        "contract_id": contract,
        "period": period,
        "decision": decision,
        "reason": (reason or "").strip() or None,
        "version": manifest["version"],
        "report_sha256": report_sha,
        "manifest_sha256": v.digest,
        "plan_hash": manifest.get("plan_hash"),
        "amount": payment.get("total") if decision == "approved" else None,
        "currency": payment.get("currency"),
        "payer": parties.get("outcome_payer"),
        "payee": parties.get("provider"),
        "signer": signer.fingerprint,
        "public_key": signer.public_key,
        "decided_at": _now(),
        # With payment periods: the period measured and each rule's amount, which the
        # periods after it read back as paid (utfall.payments.periods.earlier_record).
        **(periods.decision_fields(payment) if decision == "approved" else {}),
    }
    body["reference"] = (
        f"{contract}/{period}/v{manifest['version']}/"
        f"{signing.sha256_hex(signing.canonical(body))[:16]}"
    )
    doc = {**body, "signature": signer.sign(signing.canonical(body))}
    entries: list[tuple[str, str, dict[str, Any]]] = [("decision", contract, doc)]
    if decision == "approved":
        entries.append(("payment", contract, instruction_row(doc)))
    path = package / DECISIONS / f"{period}.json"
    if path.exists():
        raise DecisionRefused(f"{path}: a decision for period {period!r} is already in the package")
    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(_dumps(doc), encoding="utf-8")
    try:
        chain.append(con, entries)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    write_instruction(package)
    return doc


def instruction_row(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "contract_id": doc["contract_id"],
        "period": doc["period"],
        "payer": doc.get("payer"),
        "payee": doc.get("payee"),
        "amount": doc.get("amount"),
        "currency": doc.get("currency"),
        "report_sha256": doc["report_sha256"],
        "manifest_sha256": doc["manifest_sha256"],
        "package_version": doc["version"],
        "decision_reference": doc["reference"],
        "approved_at": doc["decided_at"],
        "approved_by": doc["signer"],
    }


def read_decisions(package: Path) -> list[tuple[str, dict[str, Any] | None]]:
    """(relative path, parsed document or None if unreadable), sorted by path."""
    out = []
    folder = Path(package) / DECISIONS
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out.append((f"{DECISIONS}/{p.name}", json.loads(p.read_text(encoding="utf-8"))))
        except (OSError, ValueError):
            out.append((f"{DECISIONS}/{p.name}", None))
    return out


def instruction_texts(rows: list[dict[str, Any]]) -> dict[str, str]:
    """payment_instruction.csv and .json for these rows (sorted by period)."""
    rows = sorted(rows, key=lambda r: r["period"])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=INSTRUCTION_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r[k] for k in INSTRUCTION_FIELDS})
    return {
        "payment_instruction.csv": buf.getvalue(),
        "payment_instruction.json": _dumps({"format": 1, "instructions": rows}),
    }


def write_instruction(package: Path) -> None:
    rows = [
        instruction_row(d)
        for _, d in read_decisions(package)
        if d is not None and d.get("decision") == "approved"
    ]
    if not rows:
        return
    for name, text in instruction_texts(rows).items():
        _write_atomic(Path(package) / name, text)


def check_package_signatures(
    root: Path,
    manifest: dict[str, Any],
    digest: str,
    problems: list[str],
    info: list[str],
    signers: list[str] | None = None,
) -> None:
    """Signatures of the manifest, signed decisions and the payment instruction."""
    folder = root / SIGNATURES
    data = signing.canonical(manifest)
    for p in sorted(folder.glob("*")) if folder.is_dir() else []:
        rel = f"{SIGNATURES}/{p.name}"
        try:
            sig = json.loads(p.read_text(encoding="utf-8"))
            ok = signing.verify(sig["public_key"], sig["signature"], data)
            fp = signing.fingerprint_of_raw(base64.b64decode(sig["public_key"]))
        except (OSError, ValueError, KeyError, TypeError):
            problems.append(f"{rel}: not a readable signature file")
            continue
        if not ok:
            problems.append(
                f"{rel}: the signature of {fp} does not match manifest.json (wrong signature, "
                "or the manifest changed after signing)"
            )
        elif sig.get("fingerprint") != fp:
            problems.append(f"{rel}: names fingerprint {sig.get('fingerprint')}, the key is {fp}")
        else:
            info.append(f"{rel}: valid signature by {fp} ({sig.get('signed_at')})")
            if signers is not None:
                signers.append(fp)
    approved = []
    for rel, d in read_decisions(root):
        if d is None or not isinstance(d, dict) or "signature" not in d:
            problems.append(f"{rel}: not a readable decision file")
            continue
        body = _decision_body(d)
        if not signing.verify(
            str(d.get("public_key")), str(d["signature"]), signing.canonical(body)
        ):
            problems.append(f"{rel}: the decision's signature does not match its content (edited)")
            continue
        try:
            fp = signing.fingerprint_of_raw(base64.b64decode(d["public_key"]))
        except ValueError:
            fp = None
        if fp != d.get("signer"):
            problems.append(f"{rel}: names signer {d.get('signer')}, the key is {fp}")
        if d.get("manifest_sha256") != digest:
            problems.append(
                f"{rel}: decided on manifest {str(d.get('manifest_sha256'))[:16]}..., this "
                f"package's manifest is {digest[:16]}... (the package changed after the decision)"
            )
        if Path(rel).stem != d.get("period"):
            problems.append(f"{rel}: holds the decision for period {d.get('period')!r}")
        info.append(f"{rel}: {d.get('decision')} by {d.get('signer')} ({d.get('decided_at')})")
        if d.get("decision") == "approved":
            approved.append(instruction_row(d))
    expected = instruction_texts(approved) if approved else {}
    for name in ("payment_instruction.csv", "payment_instruction.json"):
        path = root / name
        if name not in expected:
            if path.exists():
                problems.append(f"{name}: present, but no approved decision in the package")
            continue
        if not path.exists():
            problems.append(f"{name}: missing although {len(approved)} period(s) are approved")
        elif path.read_text(encoding="utf-8") != expected[name]:
            problems.append(
                f"{name}: differs from the instruction the signed decisions give (edited)"
            )


def check_ledger(
    con: duckdb.DuckDBPyConnection,
    root: Path,
    manifest: dict[str, Any],
    digest: str,
    problems: list[str],
    info: list[str],
) -> None:
    """The warehouse ledger: an intact chain, this package's publication in it, each
    decision file matching its ledger entry, and the earlier payment periods the package
    counts as paid matching their approvals."""
    broken = chain.verify(con)
    problems += broken
    entries = chain.entries(con, manifest.get("contract_id"))
    published = [
        e for e in entries if e.kind == "run" and e.payload.get("manifest_sha256") == digest
    ]
    if not published:
        problems.append(
            f"ledger: no publication of this package (manifest {digest[:16]}...) for contract "
            f"{manifest.get('contract_id')} in the warehouse (deleted, or another warehouse)"
        )
    else:
        info.append(
            f"ledger: published as entry {published[0].seq}, version {manifest.get('version')}"
        )
    by_ref = {e.payload.get("reference"): e for e in entries if e.kind == "decision"}
    held = {d.get("reference") for _, d in read_decisions(root) if isinstance(d, dict)}
    for e in by_ref.values():
        if e.payload.get("manifest_sha256") == digest and e.payload.get("reference") not in held:
            problems.append(
                f"ledger.chain entry {e.seq} records the decision "
                f"{e.payload.get('decision')} for period {e.payload.get('period')!r} on this "
                f"package, but decisions/{e.payload.get('period')}.json does not hold it "
                "(removed or replaced)"
            )
    for rel, d in read_decisions(root):
        if not isinstance(d, dict):
            continue
        e = by_ref.get(d.get("reference"))
        if e is None:
            problems.append(f"{rel}: decision {d.get('reference')} is not in the warehouse ledger")
        elif e.payload != d:
            problems.append(f"{rel}: differs from ledger.chain entry {e.seq} that records it")
    try:
        context = json.loads((root / "context.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        context = {}  # verify names an unreadable context.json itself
    problems += periods.ledger_problems(
        con,
        manifest.get("contract_id"),
        context.get("payment_period") if isinstance(context, dict) else None,
    )
    if not broken:
        info.append(f"ledger: {chain.count(con)} entries, chain intact")
