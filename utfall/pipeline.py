"""The stages of a measurement run, each reading and writing the warehouse.

Dagster assets call these one by one; `utfall run` calls them in order in one process.
Because each stage reads its inputs from the warehouse and replaces its own outputs, any
stage can be re-run alone and gives the same result.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from utfall import metrics, payments, personnummer, report, warehouse
from utfall.estimators.did import did_2x2
from utfall.estimators.result import EffectResult
from utfall.ingest import Delivery, ingest_source
from utfall.plan import Plan
from utfall.validate import ValidationSummary, validate_source

#: Plan weight names -> estimator weight argument.
WEIGHTS = {"exposure": "denominator", "equal": None}


def key_for(warehouse_path: Path) -> bytes:
    """The pseudonymisation key for this warehouse (env var, else a key file beside it)."""
    return personnummer.load_key(Path(warehouse_path).with_suffix(".pseudonym.key"))


def validation_order(plan: Plan) -> list[str]:
    """Source names with the roster first: spells are checked against valid employees."""
    roster = plan.data["cohort"]["roster_source"]
    return [roster] + [s["name"] for s in plan.sources if s["name"] != roster]


def estimate_effects(con: duckdb.DuckDBPyConnection, plan: Plan) -> list[EffectResult]:
    """Run the plan's counterfactual method for every outcome; store in `marts.effects`."""
    panel = warehouse.read_table(
        con, "SELECT * FROM marts.outcome_panel ORDER BY outcome, unit_id, period_start"
    )
    cf = plan.counterfactual
    weight = WEIGHTS[(cf.get("parameters") or {}).get("weight", "exposure")]
    results = []
    for outcome in plan.outcomes:
        sub = panel.filter(pl.col("outcome") == outcome["id"])
        results.append(
            did_2x2(sub, outcome=outcome["id"], confidence=float(cf["confidence"]), weight=weight)
        )
    rows = pl.DataFrame(
        [
            {
                "outcome": r.outcome,
                "method": r.method,
                "estimate": r.estimate,
                "std_error": r.std_error,
                "ci_low": r.ci_low,
                "ci_high": r.ci_high,
                "confidence": r.confidence,
                "relative_estimate": r.relative_estimate,
                "n_treated": r.n_treated,
                "n_comparison": r.n_comparison,
                "plan_hash": plan.hash,
                "result_json": report.dumps(r.to_dict()),
            }
            for r in results
        ]
    )
    warehouse.replace_table(con, "marts.effects", rows)  # one statement: atomic
    return results


def load_effects(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    rows = warehouse.read_table(con, "SELECT result_json FROM marts.effects ORDER BY outcome")
    return [json.loads(t) for t in rows["result_json"]]


def propose_payment(con: duckdb.DuckDBPyConnection, plan: Plan) -> dict[str, Any]:
    """Payment under the plan's terms from the stored effect; `marts.payments_proposed`."""
    effects = {e["outcome"]: e for e in load_effects(con)}
    outcome = plan.payment["outcome"]
    if outcome not in effects:
        raise RuntimeError(f"no effect estimate for payment outcome {outcome!r}; run estimates")
    proposal = payments.propose(plan, effects[outcome])
    lines = pl.DataFrame(
        [
            {
                "contract_id": plan.contract_id,
                "plan_hash": plan.hash,
                "rule": line["rule"],
                "kind": line["kind"],
                "description": line["description"],
                "achievement": line["achievement"],
                "max_amount": line["max_amount"],
                "amount": line["amount"],
                "currency": proposal["currency"],
                "status": proposal["status"],
            }
            for line in proposal["lines"]
        ]
    ).with_columns(
        pl.col("achievement").cast(pl.Decimal(10, 6)),
        pl.col("max_amount").cast(pl.Decimal(18, 2)),
        pl.col("amount").cast(pl.Decimal(18, 2)),
    )
    with warehouse.transaction(con):
        warehouse.replace_table(con, "marts.payments_proposed", lines)
        warehouse.replace_table(
            con,
            "marts.payment_proposal",
            pl.DataFrame(
                {"contract_id": [plan.contract_id], "proposal_json": [report.dumps(proposal)]}
            ),
        )
    return proposal


def assemble_report(con: duckdb.DuckDBPyConnection, plan: Plan) -> dict[str, Any]:
    """Gather every stored result into the report document (no computation of its own)."""
    inputs = warehouse.read_table(
        con, "SELECT source, file, sha256, bytes, rows FROM raw.deliveries ORDER BY source, file"
    ).to_dicts()
    recon = warehouse.read_table(
        con,
        "SELECT source, delivered, loaded, quarantined FROM quarantine.reconciliation "
        "ORDER BY source",
    ).to_dicts()
    by_rule = warehouse.read_table(
        con,
        "SELECT source, rule, count(*) AS n FROM quarantine.rows GROUP BY ALL "
        "ORDER BY source, rule",
    )
    for r in recon:
        sub = by_rule.filter(pl.col("source") == r["source"])
        r["by_rule"] = dict(zip(sub["rule"], sub["n"], strict=True))
    panel = warehouse.read_table(
        con, "SELECT * FROM marts.outcome_panel ORDER BY outcome, unit_id, period_start"
    )
    proposal = json.loads(
        warehouse.read_table(con, "SELECT proposal_json FROM marts.payment_proposal")[
            "proposal_json"
        ][0]
    )
    return report.build_report(plan, inputs, recon, panel, load_effects(con), proposal)


@dataclass(frozen=True)
class RunResult:
    deliveries: list[Delivery]
    validations: list[ValidationSummary]
    effects: list[EffectResult]
    payment: dict[str, Any]
    report_paths: dict[str, Path]


def run(
    plan: Plan,
    warehouse_path: Path,
    deliveries_dir: Path,
    out_dir: Path,
    progress: Callable[[str], None] | None = None,
) -> RunResult:
    """All stages in order, in this process; `progress` gets one line per finished step."""
    say = progress or (lambda msg: print(msg, file=sys.stderr))
    key = key_for(warehouse_path)
    steps = 2 * len(plan.sources) + 4
    n = 0

    def step(label: str, fn: Callable[[], Any], describe: Callable[[Any], str]) -> Any:
        nonlocal n
        n += 1
        t0 = time.perf_counter()
        out = fn()
        say(f"[{n}/{steps}] {label}: {describe(out)} ({time.perf_counter() - t0:.1f} s)")
        return out

    con = warehouse.connect(warehouse_path)
    try:
        deliveries: list[Delivery] = []
        for s in plan.sources:
            deliveries += step(
                f"ingest {s['name']}",
                lambda s=s: ingest_source(con, plan, s["name"], deliveries_dir, key),
                lambda d: ", ".join(f"{x.file} {x.rows} rows" for x in d),
            )
        validations = [
            step(
                f"validate {name}",
                lambda name=name: validate_source(con, plan, name),
                lambda v: f"{v.loaded} loaded, {v.quarantined} quarantined",
            )
            for name in validation_order(plan)
        ]
        step(
            "outcome panel",
            lambda: metrics.build_outcome_panel(con, plan),
            lambda p: f"{p.height} unit-quarter rows",
        )
        effects = step(
            "effects",
            lambda: estimate_effects(con, plan),
            lambda rs: "; ".join(f"{r.outcome} {r.relative_estimate:+.1%}" for r in rs),
        )
        payment = step(
            "payment",
            lambda: propose_payment(con, plan),
            lambda p: f"{p['total']} {p['currency']} proposed",
        )
        paths = step(
            "report",
            lambda: report.write_report(assemble_report(con, plan), out_dir),
            lambda ps: str(ps["report.html"]),
        )
    finally:
        con.close()
    return RunResult(deliveries, validations, effects, payment, paths)
