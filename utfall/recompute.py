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

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from utfall import estimators, metrics, payments, report
from utfall.errors import MeasurementError
from utfall.estimators.base import Design
from utfall.estimators.result import EffectResult
from utfall.naive import naive_comparison
from utfall.plan import Plan
from utfall.warehouse import layout
from utfall.warehouse.runs import Run

#: Arguments of `report.build_report` that the package carries as recorded facts (they come
#: from ingest and validation, which need the raw files): see `replication`.
#: An EffectResult's relative numbers (NaN where the outcome has none: Plan.relative_effect).
RELATIVE_FIELDS = ("relative_estimate", "relative_ci_low", "relative_ci_high")

CONTEXT_KEYS = ("inputs", "reconciliation", "notes", "cohort", "quality", "population")


def finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")


def person_frame(
    con: duckdb.DuckDBPyConnection, plan: Plan, run: Run, outcome_id: str
) -> pl.DataFrame:
    """The `person` input of an estimator for one person_value outcome: person_id,
    treated (Int8 0/1), y (Float64) and the source's covariates (numbers Float64,
    categories String), one row per valid person of the source, in delivery order."""
    from utfall import person_metrics
    from utfall.schemas.generic import variable_columns
    from utfall.validate import staged_generic

    outcome = plan.outcome(outcome_id)
    if outcome["metric"] in person_metrics.FRAMES:
        frame, _flow = person_metrics.FRAMES[outcome["metric"]](con, plan, run, outcome_id)
        return frame
    column = plan.outcome_parameters(outcome_id)["column"]
    source = plan.source(outcome["source"])
    staged = staged_generic(con, plan, run, outcome["source"])
    covariates = [n for n, role in variable_columns(source).items() if role != "outcome"]
    return staged.select(
        pl.col("person_id").cast(pl.String),
        (pl.col("group") == "treated").cast(pl.Int8).alias("treated"),
        pl.col(column).cast(pl.Float64).alias("y"),
        *covariates,
    )


def person_flows(con: duckdb.DuckDBPyConnection, plan: Plan, run: Run) -> list[dict[str, Any]]:
    """Per person-data outcome (plan order) its flow per arm from the run's staged rows:
    enrolled, excluded by eligibility, eligible, dropped, analysed
    (utfall.domains.person.person_flow); empty for plans without such outcomes."""
    from utfall import person_metrics

    flows = []
    for outcome in plan.outcomes:
        if outcome["metric"] in person_metrics.FRAMES:
            _frame, flow = person_metrics.FRAMES[outcome["metric"]](con, plan, run, outcome["id"])
            flows.append({"outcome": outcome["id"], **flow})
    return flows


def flow_rows(flows: list[dict[str, Any]], k: int) -> pl.DataFrame:
    """The flows as rows of work.person_flow (one per outcome, arm and step), each with
    whether the report hides it at the plan's threshold `k` (report.flow_suppression)."""
    hidden = report.flow_suppression(flows, k)
    rows = []
    for flow in flows:
        for arm in flow["arms"]:
            g, o = arm["group"], flow["outcome"]
            steps = [("enrolled", None, None, arm["enrolled"], ("enrolled", g))]
            steps += [
                ("excluded", "not_eligible", e["criterion"], e["persons"])
                + (("excluded", g, e["criterion"]),)
                for e in arm["excluded"]
            ]
            steps.append(("eligible", None, None, arm["eligible"], ("eligible", g)))
            steps += [
                ("dropped", d["reason"], d["column"], d["persons"])
                + (("dropped", o, g, d["reason"], d["column"]),)
                for d in arm["dropped"]
            ]
            steps.append(("analysed", None, None, arm["analysed"], ("analysed", o, g)))
            for seq, (step, reason, variable, n, key) in enumerate(steps):
                rows.append(
                    {
                        "outcome": flow["outcome"],
                        "arm": arm["group"],
                        "seq": seq,
                        "step": step,
                        "reason": reason,
                        "variable": variable,
                        "persons": int(n),
                        "suppressed": bool(hidden.get(key)),
                    }
                )
    schema = {"outcome": pl.Utf8, "arm": pl.Utf8, "seq": pl.Int64, "step": pl.Utf8}
    schema |= {"reason": pl.Utf8, "variable": pl.Utf8, "persons": pl.Int64}
    schema |= {"suppressed": pl.Boolean}
    return pl.DataFrame(rows, schema=schema)


def flows_from_rows(plan: Plan, rows: pl.DataFrame) -> list[dict[str, Any]]:
    """The inverse of :func:`flow_rows` (the stored flows as `person_flows` returns them)."""
    flows = []
    for outcome in [o["id"] for o in plan.outcomes]:
        mine = rows.filter(pl.col("outcome") == outcome)
        if mine.height == 0:
            continue
        arms = []
        for group in ("treated", "comparison"):
            arm: dict[str, Any] = {"group": group, "excluded": [], "dropped": []}
            for r in mine.filter(pl.col("arm") == group).sort("seq").iter_rows(named=True):
                if r["step"] == "excluded":
                    arm["excluded"].append({"criterion": r["variable"], "persons": r["persons"]})
                elif r["step"] == "dropped":
                    arm["dropped"].append(
                        {"reason": r["reason"], "column": r["variable"], "persons": r["persons"]}
                    )
                else:
                    arm[r["step"]] = r["persons"]
            arms.append(
                {
                    k: arm[k]
                    for k in ("group", "enrolled", "excluded", "eligible", "dropped", "analysed")
                }
            )
        flows.append({"outcome": outcome, "arms": arms})
    return flows


def persons_section(
    flows: list[dict[str, Any]], conversions: list[dict[str, Any]]
) -> dict[str, Any]:
    """The report's person counts: `outcomes` (the flows) and `conversions` (valid lab rows
    per analyte and conversion), each only when there is one."""
    out: dict[str, Any] = {}
    if flows:
        out["outcomes"] = flows
    if conversions:
        out["conversions"] = conversions
    return out


def persons(con: duckdb.DuckDBPyConnection, plan: Plan, run: Run) -> dict[str, Any]:
    """The report's person counts recomputed from the run's staged rows (`utfall verify`):
    see :func:`persons_section`."""
    from utfall import person_metrics

    return persons_section(
        person_flows(con, plan, run), person_metrics.lab_conversions(con, plan, run)
    )


def estimator_frame(
    con: duckdb.DuckDBPyConnection,
    plan: Plan,
    run: Run,
    outcome_id: str,
    shape: str,
    panel: pl.DataFrame,
) -> pl.DataFrame:
    """The input frame of the plan's estimator for one outcome, by its data shape: the
    person table's rows (read from `con`) or the outcome's rows of `panel`."""
    if shape == "person":
        frame = person_frame(con, plan, run, outcome_id)
        empty = "no valid person in its source"
        period = plan.payment_period
        if period is not None and period.kind == "interim":
            empty = (
                f"no person has it observed by {period.through}, the through of payment "
                f"period {period.name!r} (or none is valid in its source); measure it in a "
                "later period"
            )
    else:
        frame = panel.filter(pl.col("outcome") == outcome_id)
        empty = (
            "no eligible employees in any cohort unit"
            if plan.outcome(outcome_id)["metric"] in metrics.SICK_LEAVE_METRICS
            else "no valid unit-period row in its source"
        )
    if frame.height == 0:
        raise MeasurementError(f"outcome {outcome_id!r}: {empty}, so there is nothing to measure")
    return frame


def fit_effects(plan: Plan, frame_for: Callable[[str, str], pl.DataFrame]) -> list[EffectResult]:
    """The plan's counterfactual method for every outcome, on `frame_for(outcome_id,
    data_shape)`, with the refusals a payment must not pass (an unbounded interval, no
    relative effect where the outcome has one: Plan.relative_effect). Each result carries the
    naive comparison on the same frame (utfall.naive); an outcome without a relative effect (a
    change from baseline) gets NaN there (null in JSON)."""
    cf = plan.counterfactual
    estimator = estimators.get(cf["method"])
    results = []
    for outcome in plan.outcomes:
        sub = frame_for(outcome["id"], estimator.data)
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
        relative = plan.relative_effect(outcome["id"])
        no_relative = dict.fromkeys(RELATIVE_FIELDS, float("nan"))
        r = dataclasses.replace(
            r,
            naive=naive_comparison(sub, estimator.data, float(cf["confidence"])),
            **({} if relative else no_relative),
        )
        ri = r.diagnostics.get("randomization")
        wb = r.diagnostics.get("wild_bootstrap")
        bounds = (r.ci_low, r.ci_high) + ((r.relative_ci_low, r.relative_ci_high) * relative)
        unbounded = not all(map(finite, bounds))
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
        needed = (r.estimate, r.std_error) + ((r.relative_estimate, r.relative_ci_low) * relative)
        if not all(map(finite, needed)):
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


def propose_payment(
    plan: Plan, effects: list[dict[str, Any]], inputs: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The payment under the plan's terms from the effect of the plan's payment outcome, and
    `inputs` (events, counts: `payment_inputs`) for the rules that read them. For a plan
    measured for a payment period (`periods.measured_plan`), the proposal is the period's:
    cumulative due less what the earlier periods paid, with their provenance."""
    from utfall.payments import periods

    by_outcome = {e["outcome"]: e for e in effects}
    outcome = plan.payment["outcome"]
    if outcome not in by_outcome:
        raise MeasurementError(f"no effect estimate for the payment outcome {outcome!r}")
    proposal = payments.propose(
        plan, by_outcome[outcome], **periods.propose_arguments(plan), **(inputs or {})
    )
    return periods.annotate(proposal, plan.payment_period)


def payment_inputs(con: duckdb.DuckDBPyConnection, plan: Plan, run: Run) -> dict[str, Any]:
    """The payment rules' inputs besides the effect, from the run's staged rows (the same in
    the pipeline and in `utfall verify`): see utfall.person_metrics.payment_inputs."""
    from utfall import person_metrics

    return person_metrics.payment_inputs(con, plan, run)


def staging_database(
    plan: Plan, staging: Mapping[str, pl.DataFrame]
) -> tuple[duckdb.DuckDBPyConnection, Run]:
    """A private in-memory DuckDB holding only `staging` (each source kind's validated rows,
    columns of `work.staging_<kind>` without contract and run), under a run of its own."""
    run = Run(run_id="recompute", contract_id=plan.contract_id)
    con = duckdb.connect(":memory:")
    con.execute("SET python_enable_replacements=false")
    con.execute("CREATE SCHEMA work")
    for kind, frame in staging.items():
        table = f"work.staging_{kind}"
        con.execute(f"CREATE TABLE {table} ({layout.WORK_TABLES[table]})")
        _check_layout(con, table, frame.columns)
        with_scope = frame.with_columns(
            pl.lit(run.contract_id).alias("contract_id"), pl.lit(run.run_id).alias("run_id")
        )
        con.register("_rows", with_scope.to_arrow())
        cols = ", ".join(f'"{c}"' for c in with_scope.columns)
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _rows")
        con.unregister("_rows")
    return con, run


def _check_layout(con: duckdb.DuckDBPyConnection, table: str, columns: list[str]) -> None:
    """A package's staging rows must have this version's columns (e.g. a package built before
    lab results held `value` and `unit` has `hba1c_mmol_mol`): say so, not a SQL error."""
    schema, name = table.split(".")
    expected = {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ?",
            [schema, name],
        ).fetchall()
    } - {"contract_id", "run_id"}
    missing, unknown = sorted(expected - set(columns)), sorted(set(columns) - expected)
    if missing or unknown:
        raise MeasurementError(
            f"{table}: the package's rows have other columns than this version's layout "
            f"(schema version {layout.SCHEMA_VERSION}; missing: {', '.join(missing) or 'none'}; "
            f"unknown: {', '.join(unknown) or 'none'}): it was built by another version of "
            "utfall; verify it with that version"
        )


def outcome_panel(plan: Plan, staging: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """The outcome panel from validated rows (see `staging_database`): the same SQL as the
    pipeline's, in a private in-memory DuckDB."""
    con, run = staging_database(plan, staging)
    try:
        # The pipeline's estimators read the panel back from the warehouse in this order.
        return metrics.full_outcome_panel(con, plan, run).sort("outcome", "unit_id", "period_start")
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
    persons: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`report.build_report` with the recorded context (inputs, reconciliation, ...) and the
    person counts computed from the staged rows (`persons`)."""
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
        persons=persons,
    )


def recompute(
    plan: Plan, staging: Mapping[str, pl.DataFrame], context: Mapping[str, Any]
) -> Recomputed:
    """Every number of the report from the validated rows, the plan and the context (with
    the payment period the package was measured for, `context["payment_period"]`)."""
    from utfall.payments import periods

    if context.get("payment_period"):
        plan = periods.measured_plan(
            plan, periods.PaymentPeriod.from_dict(context["payment_period"])
        )
    con, run = staging_database(plan, staging)
    try:
        panel = metrics.full_outcome_panel(con, plan, run).sort(
            "outcome", "unit_id", "period_start"
        )
        results = fit_effects(
            plan,
            lambda outcome_id, shape: estimator_frame(con, plan, run, outcome_id, shape, panel),
        )
        inputs = payment_inputs(con, plan, run)
        counts = persons(con, plan, run)
    finally:
        con.close()
    effects = effect_records(results)
    payment = propose_payment(plan, effects, inputs)
    return Recomputed(
        panel, effects, payment, report_document(plan, context, panel, effects, payment, counts)
    )
