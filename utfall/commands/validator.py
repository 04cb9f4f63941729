"""The validator's commands: keygen, verify, sign, approve, reject, ledger verify.

`verify` needs only the package (and, with `--warehouse`, the ledger): it re-computes every
number from the package's pseudonymised inputs with the domain core, never Dagster.
Problems go to stdout one per line; the exit status is 1 when the package does not verify,
2 for a usage error (a missing folder, an unreadable key).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _warehouse_arg(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument(
        "--warehouse", help=help_text + " (default: $UTFALL_WAREHOUSE or data/warehouse.duckdb)"
    )


def _connect(path: str | None, read_only: bool):
    from utfall import warehouse

    return warehouse.connect(path or warehouse.default_path(), read_only=read_only)


def _keygen(args: argparse.Namespace) -> int:
    from utfall import signing

    private, public, fp = signing.keygen(Path(args.out))
    print(f"private key: {private} (keep it secret; mode 0600)")
    print(f"public key:  {public}")
    print(f"fingerprint: {fp}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from utfall.replication import verify_package

    con = _connect(args.warehouse, read_only=True) if args.warehouse else None
    try:
        v = verify_package(
            Path(args.package), con=con, progress=lambda m: print(m, file=sys.stderr)
        )
    finally:
        if con is not None:
            con.close()
    for fp in args.signer:
        if fp not in v.signers:
            v.problems.append(f"signatures/: no valid signature of manifest.json by {fp}")
    m = v.manifest or {}
    print(
        f"package {args.package}: contract {m.get('contract_id')}, version {m.get('version')}, "
        f"manifest sha256 {v.digest}"
    )
    for line in v.info:
        print(f"  ok: {line}")
    for line in v.problems:
        print(f"  DIFFERS: {line}")
    print(
        "verified: every number and hash matches"
        if v.ok
        else f"NOT VERIFIED: {len(v.problems)} problem(s)"
    )
    return 0 if v.ok else 1


def _sign(args: argparse.Namespace) -> int:
    from utfall.decisions import sign_package

    path = sign_package(Path(args.package), Path(args.key))
    print(f"signed: {path}")
    return 0


def _decide(args: argparse.Namespace) -> int:
    from utfall.decisions import decide

    con = _connect(args.warehouse, read_only=False)
    try:
        doc = decide(
            Path(args.package),
            Path(args.key),
            con,
            decision="approved" if args.command == "approve" else "rejected",
            period=args.period,
            reason=getattr(args, "reason", None),
        )
    finally:
        con.close()
    print(f"{doc['decision']}: {doc['reference']} by {doc['signer']} at {doc['decided_at']}")
    if doc["decision"] == "approved":
        print(
            f"payment instruction: {Path(args.package) / 'payment_instruction.csv'} "
            f"({doc['amount']} {doc['currency']} to {doc['payee']})"
        )
    return 0


def _ledger_verify(args: argparse.Namespace) -> int:
    from utfall.warehouse import chain

    con = _connect(args.warehouse, read_only=True)
    try:
        problems = chain.verify(con)
        n = chain.count(con)
    finally:
        con.close()
    for p in problems:
        print(f"  ALTERED: {p}")
    print(
        f"ledger intact: {n} entries"
        if not problems
        else f"LEDGER ALTERED: {len(problems)} problem(s)"
    )
    return 0 if not problems else 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add the validator's commands to the `utfall` parser."""
    kg = sub.add_parser("keygen", help="make a validator's Ed25519 key pair (FILE and FILE.pub)")
    kg.add_argument("out", metavar="FILE", help="private key file to create")
    kg.set_defaults(func=_keygen)

    ver = sub.add_parser(
        "verify", help="re-compute a replication package and check every number and hash"
    )
    ver.add_argument("package", metavar="PACKAGE", help="a report folder (replication package)")
    ver.add_argument(
        "--warehouse",
        help="also check the package and its decisions against this warehouse's ledger",
    )
    ver.add_argument(
        "--signer",
        action="append",
        default=[],
        metavar="FINGERPRINT",
        help="require a valid signature of the manifest by this key (repeatable)",
    )
    ver.set_defaults(func=_verify)

    sg = sub.add_parser("sign", help="verify a package, then sign its manifest")
    sg.add_argument("package", metavar="PACKAGE", help="the report folder (replication package)")
    sg.add_argument("--key", required=True, metavar="FILE", help="the validator's private key")
    sg.set_defaults(func=_sign)

    for name, help_text in (
        ("approve", "approve a verified package for a period: writes the payment instruction"),
        ("reject", "reject a package for a period, with the reason"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("package", metavar="PACKAGE", help="the report folder (replication package)")
        p.add_argument("--key", required=True, metavar="FILE", help="the validator's private key")
        p.add_argument(
            "--period",
            help="the contract period decided (default: the payment period the package was "
            "measured for, else final)",
        )
        if name == "reject":
            p.add_argument("--reason", required=True, help="why the report is rejected")
        else:
            p.add_argument("--reason", help="an optional comment recorded with the approval")
        _warehouse_arg(p, "warehouse whose ledger records the decision")
        p.set_defaults(func=_decide)

    led = sub.add_parser("ledger", help="the warehouse's append-only ledger")
    led_sub = led.add_subparsers(dest="ledger_command", required=True)
    lv = led_sub.add_parser("verify", help="check the hash chain; name any edited or deleted entry")
    _warehouse_arg(lv, "warehouse to check")
    lv.set_defaults(func=_ledger_verify)
