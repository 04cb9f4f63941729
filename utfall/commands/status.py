"""`utfall status`: what the warehouse holds, on one screen (or as JSON with `--json`).

Per contract: its title and periods, the published run, the latest run's deliveries and
their checks (reconciliation, data-quality expectations), the report on disk (which run it
shows, and whether its files still match their manifest), the validator's decisions and the
recent runs; then whether the analysts' snapshot is current. The warehouse is opened
read-only and closed before anything is printed, so status never holds up a run for long.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from utfall import snapshot, warehouse

RECENT_RUNS = 5


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "status",
        help="contracts, deliveries and their checks, runs, reports and decisions",
        description="Show what the warehouse holds: per contract its periods, the published "
        "run, the latest deliveries and their checks, the report, the validator's decisions "
        "and recent runs.",
    )
    p.add_argument(
        "--warehouse", help="DuckDB file (default: $UTFALL_WAREHOUSE or data/warehouse.duckdb)"
    )
    p.add_argument(
        "--reports",
        help="folder holding one report folder per contract id (default: data/reports)",
    )
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from utfall.cli import REPORTS_ROOT

    path = Path(args.warehouse or warehouse.default_path())
    reports = Path(args.reports or REPORTS_ROOT)
    status = collect(path, reports)
    print(json.dumps(status, indent=2, sort_keys=True) if args.json else render(status))
    return 0


# ---- collecting --------------------------------------------------------------------------


def _rows(con, sql: str, params: list | None = None) -> list[dict[str, Any]]:
    rel = con.sql(sql, params=params or None)
    cols = rel.columns
    return [dict(zip(cols, (_plain(v) for v in r), strict=True)) for r in rel.fetchall()]


def _decisions(con, sql: str, params: list) -> list[dict[str, Any]]:
    """The decision rows, each rule's amount as a list (the chain stores it as JSON)."""
    rows = _rows(con, sql, params)
    for r in rows:
        r["payment_lines"] = json.loads(r["payment_lines"]) if r["payment_lines"] else []
    return rows


def _plain(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.isoformat(sep=" ", timespec="seconds")
    if isinstance(v, dt.date):
        return v.isoformat()
    return v


def collect(path: Path, reports_root: Path) -> dict[str, Any]:
    """Everything `status` shows, as plain JSON-able data."""
    con = warehouse.connect(path, read_only=True)
    try:
        # contracts with runs, and those only in the ledger (e.g. carried over by
        # `utfall warehouse upgrade`, not measured again yet)
        ids = [
            r["contract_id"]
            for r in _rows(
                con,
                "SELECT contract_id FROM ledger.runs UNION SELECT contract_id FROM ledger.chain "
                "ORDER BY 1",
            )
        ]
        contracts = [_contract(con, c, reports_root / c) for c in ids]
        published = _rows(
            con, "SELECT contract_id, run_id, plan_hash FROM ledger.published ORDER BY ALL"
        )
    finally:
        con.close()
    return {
        "warehouse": str(path),
        "contracts": contracts,
        "snapshot": _snapshot_state(path, published),
    }


def _contract(con, contract_id: str, report_dir: Path) -> dict[str, Any]:
    runs = _rows(
        con,
        "SELECT run_id, status, stage, origin, started_at, finished_at, seconds, error, "
        "plan_hash FROM marts.runs WHERE contract_id = ? ORDER BY started_at DESC, run_id DESC",
        [contract_id],
    )
    published = next((r for r in runs if r["status"] == "published"), None)
    plan = _rows(
        con,
        "SELECT title, baseline_start, baseline_end, measurement_start, measurement_end, "
        "frequency, min_cell_size FROM ledger.run_plans WHERE contract_id = ? AND run_id = ?",
        [contract_id, published["run_id"] if published else ""],
    )
    latest = runs[0] if runs else None
    scope = [contract_id, latest["run_id"] if latest else ""]
    return {
        "contract_id": contract_id,
        "plan": plan[0] if plan else None,
        "published_run": published
        and {k: published[k] for k in ("run_id", "finished_at", "plan_hash")},
        "latest_run": latest and {k: latest[k] for k in ("run_id", "status", "stage", "error")},
        "deliveries": _rows(
            con,
            "SELECT source, file, rows, sha256, status FROM ledger.deliveries "
            "WHERE contract_id = ? AND run_id = ? ORDER BY source, file",
            scope,
        ),
        "reconciliation": _rows(
            con,
            "SELECT source, delivered, loaded, quarantined FROM work.reconciliation "
            "WHERE contract_id = ? AND run_id = ? ORDER BY source",
            scope,
        ),
        "quality": _rows(
            con,
            "SELECT source, expectation, severity, success, observed FROM work.quality_results "
            "WHERE contract_id = ? AND run_id = ? ORDER BY source, expectation",
            scope,
        ),
        "report": _report_state(report_dir, published["run_id"] if published else None),
        "decisions": _decisions(
            con,
            "SELECT d.run_id, d.period, d.decision, d.signer AS signer_fingerprint, "
            "d.decided_at, d.reason, json_extract_string(c.payload_json, '$.amount') AS amount, "
            "json_extract_string(c.payload_json, '$.currency') AS currency, "
            "json_extract(c.payload_json, '$.payment_lines') AS payment_lines "
            "FROM ledger.decisions d JOIN ledger.chain c ON c.seq = d.seq "
            "WHERE d.contract_id = ? ORDER BY d.seq",
            [contract_id],
        ),
        "runs": runs[:RECENT_RUNS],
        "runs_total": len(runs),
    }


def _report_state(folder: Path, published_run: str | None) -> dict[str, Any]:
    """Which run the report on disk shows and whether its files match its manifest."""
    manifest = folder / "manifest.json"
    if not manifest.exists():
        return {"path": str(folder), "state": "missing"}
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
        files = doc["files"]
        run_id = doc["run_id"]
    except (ValueError, KeyError, TypeError):
        return {"path": str(folder), "state": "unreadable manifest"}
    changed = sorted(
        name
        for name, digest in files.items()
        if not (folder / name).exists()
        or hashlib.sha256((folder / name).read_bytes()).hexdigest() != digest
    )
    if changed:
        state = f"modified since written: {', '.join(changed)}"
    elif run_id != published_run:
        state = "not the published run's report"
    else:
        state = "current"
    return {"path": str(folder), "state": state, "run_id": run_id}


def _snapshot_state(path: Path, published: list[dict[str, Any]]) -> dict[str, Any]:
    where = snapshot.snapshot_path(path)
    try:
        manifest = snapshot.read_manifest(path)
    except ValueError:
        return {"path": str(where), "state": "unreadable manifest"}
    if manifest is None:
        return {"path": str(where), "state": "missing"}
    state = "current" if manifest.get("published") == published else "stale"
    return {"path": str(where), "state": state, "exported_at": manifest.get("exported_at")}


# ---- rendering ---------------------------------------------------------------------------


def _short(run_id: str | None) -> str:
    return (run_id or "")[:12]


def render(status: dict[str, Any]) -> str:
    """One readable screen."""
    out = [f"warehouse {status['warehouse']}"]
    if not status["contracts"]:
        out.append("no runs yet: `utfall run PLAN` measures a contract")
    for c in status["contracts"]:
        out += [""] + _render_contract(c)
    snap = status["snapshot"]
    out += ["", f"analysts' snapshot: {snap['path']}: {snap['state']}"]
    if snap.get("exported_at"):
        out[-1] += f" (exported {snap['exported_at']})"
    return "\n".join(out)


def _render_contract(c: dict[str, Any]) -> list[str]:
    plan = c["plan"]
    out = [f"contract {c['contract_id']}" + (f": {plan['title']}" if plan else "")]
    if plan:
        out.append(
            f"  periods      baseline {plan['baseline_start']}..{plan['baseline_end']}, "
            f"measurement {plan['measurement_start']}..{plan['measurement_end']} "
            f"({plan['frequency']})"
        )
    pub = c["published_run"]
    out.append(
        f"  published    run {_short(pub['run_id'])} at {pub['finished_at']} "
        f"(plan {pub['plan_hash'][:19]})"
        if pub
        else "  published    nothing yet"
    )
    latest = c["latest_run"]
    if latest is None:  # only in the ledger: what it holds, and how to measure it again
        out.append(
            "  runs         none in this warehouse (its ledger entries were carried over); "
            "`utfall run PLAN` measures it again"
        )
        return out + _render_decisions(c, pub)
    if not pub or latest["run_id"] != pub["run_id"]:
        line = f"  latest run   {_short(latest['run_id'])} {latest['status']} at {latest['stage']}"
        out.append(line + (f": {latest['error']}" if latest["error"] else ""))
    out.append(f"  deliveries   (run {_short(latest['run_id'])})")
    for d in c["deliveries"]:
        out.append(
            f"    {d['source']}/{d['file']}: {d['rows']} rows, {d['status']}, "
            f"sha256 {d['sha256'][:12]}"
        )
    for r in c["reconciliation"]:
        ok = r["delivered"] == r["loaded"] + r["quarantined"]
        out.append(
            f"    {r['source']}: {r['delivered']} delivered = {r['loaded']} loaded + "
            f"{r['quarantined']} quarantined" + ("" if ok else "  MISMATCH")
        )
    checks = c["quality"]
    if checks:
        met = sum(1 for q in checks if q["success"])
        out.append(f"  checks       {met} of {len(checks)} data-quality expectations met")
        for q in checks:
            if not q["success"]:
                out.append(
                    f"    FAILED {q['source']} {q['expectation']} ({q['severity']}): "
                    f"{q['observed']}"
                )
    else:
        out.append("  checks       none recorded for this run")
    rep = c["report"]
    out.append(
        f"  report       {rep['path']}: {rep['state']}"
        + (f" (run {_short(rep['run_id'])})" if rep.get("run_id") else "")
    )
    out += _render_decisions(c, pub)
    out.append(f"  runs         {c['runs_total']} in all; latest first:")
    for r in c["runs"]:
        secs = f"{r['seconds']:.1f} s" if r["seconds"] is not None else "-"
        out.append(
            f"    {_short(r['run_id'])}  {r['status']:<10} {r['stage'] or '':<20} "
            f"{r['started_at']}  {secs:>8}  {r['origin'] or ''}"
        )
    return out


def _render_decisions(c: dict[str, Any], pub: dict[str, Any] | None) -> list[str]:
    out = []
    if c["decisions"]:
        for d in c["decisions"]:
            amount = f" {d['amount']} {d['currency'] or ''}".rstrip() if d["amount"] else ""
            out.append(
                f"  decision     {d['decision']}{amount} for {d['period']} on run "
                f"{_short(d['run_id'])} at {d['decided_at']} by {d['signer_fingerprint']}"
                + (f": {d['reason']}" if d["reason"] else "")
            )
            for line in d["payment_lines"]:
                out.append(
                    f"                 rule {line['rule']} ({line['kind']}): {line['amount']}"
                )
    else:
        out.append("  decision     none yet" + (" (awaiting the validator)" if pub else ""))
    return out
