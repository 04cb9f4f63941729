"""The pure computation from validated, pseudonymised rows to the report document.

    staging rows --metrics.outcome_panel--> outcome panel --estimator.fit--> effects
        --payments.propose--> payment proposal --report.build_report--> report.json

The pipeline and `utfall verify` share these functions, so a validator re-running a
replication package runs exactly the code that produced the report. The outcome panel's
SQL runs in an in-memory DuckDB holding only the package's rows (no warehouse file, no
Dagster); its sums are of integers, so the panel is bit-identical to the warehouse's.
Effects go through the same JSON round trip as in the warehouse (`result_json`), so the
payment and report see identical floats.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from utfall import estimators, metrics, payments, report
from utfall.errors import MeasurementError
from utfall.estimators.base import Design
from utfall.estimators.result import EffectResult
from utfall.plan import Plan
from utfall.warehouse import layout
from utfall.warehouse.runs import Run

#: Arguments of `report.build_report` that the package carries as recorded facts (they come
#: from ingest and validation, which need the raw files): see `replication`.
CONTEXT_KEYS = ("inputs", "reconciliation", "notes", "cohort", "quality", "population")


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")


def fit_effects(plan: Plan, panel: pl.DataFrame) -> list[EffectResult]:
    """The plan's counterfactual method for every outcome of `panel`, with the refusals a
    payment must not pass (no data, an unbounded interval, no relative effect)."""
    cf = plan.counterfactual
    estimator = estimators.get(cf["method"])
    results = []
    for outcome in plan.outcomes:
        sub = panel.filter(pl.col("outcome") == outcome["id"])
        if sub.height == 0:
            raise MeasurementError(
                f"outcome {outcome['id']!r}: no eligible employees in any cohort unit, so "
                "there is nothing to measure"
            )
        r = estimator.fit(
            sub,
            Design(
                outcome=outcome["id"],
                parameters=plan.counterfactual_parameters,
                confidence=float(cf["confidence"]),
                seed=int(cf["seed"]),
                baseline=plan.period("baseline"),
                measurement=plan.period("measurement"),
                frequency=plan.data["periods"]["frequency"],
            ),
        )
        ri = r.diagnostics.get("randomization")
        wb = r.diagnostics.get("wild_bootstrap")
        unbounded = not all(
            map(_finite, (r.ci_low, r.ci_high, r.relative_ci_low, r.relative_ci_high))
        )
        if ri and unbounded:
            raise MeasurementError(
                f"outcome {outcome['id']!r}: randomization inference over the "
                f"{ri['n_assignments']} possible assignments of {r.n_treated} treated and "
                f"{r.n_comparison} comparison units cannot exclude any effect at confidence "
                f"{cf['confidence']}, so the interval is unbounded; more units are needed"
            )
        if wb and unbounded:
            raise MeasurementError(
                f"outcome {outcome['id']!r}: the wild cluster bootstrap over "
                f"{r.n_treated} treated and {r.n_comparison} comparison units gives an "
                f"unbounded interval at confidence {cf['confidence']}; more units are needed"
            )
        if not all(map(_finite, (r.estimate, r.std_error, r.relative_estimate, r.relative_ci_low))):
            raise MeasurementError(
                f"outcome {outcome['id']!r}: the counterfactual level is "
                f"{r.counterfactual:.6g} (zero or below, or undefined), so a relative effect "
                "cannot be computed; check the deliveries for missing events"
            )
        results.append(r)
    return results


def effect_records(results: list[EffectResult]) -> list[dict[str, Any]]:
    """Effects as stored and read back (`work.effects.result_json`): the JSON round trip."""
    return [json.loads(report.dumps(r.to_dict())) for r in results]


def propose_payment(plan: Plan, effects: list[dict[str, Any]]) -> dict[str, Any]:
    """The payment under the plan's terms from the effect of the plan's payment outcome."""
    by_outcome = {e["outcome"]: e for e in effects}
    outcome = plan.payment["outcome"]
    if outcome not in by_outcome:
        raise MeasurementError(f"no effect estimate for the payment outcome {outcome!r}")
    return payments.propose(plan, by_outcome[outcome])


def outcome_panel(plan: Plan, staging: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """The outcome panel from validated rows: `staging` maps each source kind to its rows
    (columns of `work.staging_<kind>` without contract and run). The same SQL as the
    pipeline's, in a private in-memory DuckDB."""
    run = Run(run_id="recompute", contract_id=plan.contract_id)
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET python_enable_replacements=false")
        con.execute("CREATE SCHEMA work")
        for kind, frame in staging.items():
            table = f"work.staging_{kind}"
            con.execute(f"CREATE TABLE {table} ({layout.WORK_TABLES[table]})")
            with_scope = frame.with_columns(
                pl.lit(run.contract_id).alias("contract_id"), pl.lit(run.run_id).alias("run_id")
            )
            con.register("_rows", with_scope.to_arrow())
            cols = ", ".join(f'"{c}"' for c in with_scope.columns)
            con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _rows")
            con.unregister("_rows")
        # The pipeline's estimators read the panel back from the warehouse in this order.
        return metrics.outcome_panel(con, plan, run).sort("outcome", "unit_id", "period_start")
    finally:
        con.close()


@dataclass(frozen=True)
class Recomputed:
    panel: pl.DataFrame
    effects: list[dict[str, Any]]
    payment: dict[str, Any]
    document: dict[str, Any]


def report_document(
    plan: Plan,
    context: Mapping[str, Any],
    panel: pl.DataFrame,
    effects: list[dict[str, Any]],
    payment: dict[str, Any],
) -> dict[str, Any]:
    """`report.build_report` with the recorded context (inputs, reconciliation, ...)."""
    return report.build_report(
        plan,
        context["inputs"],
        context["reconciliation"],
        panel,
        effects,
        payment,
        notes=context["notes"],
        cohort=context["cohort"],
        quality=context["quality"],
        population=context.get("population"),
    )


def recompute(
    plan: Plan, staging: Mapping[str, pl.DataFrame], context: Mapping[str, Any]
) -> Recomputed:
    """Every number of the report from the validated rows, the plan and the context."""
    panel = outcome_panel(plan, staging)
    effects = effect_records(fit_effects(plan, panel))
    payment = propose_payment(plan, effects)
    return Recomputed(
        panel, effects, payment, report_document(plan, context, panel, effects, payment)
    )
