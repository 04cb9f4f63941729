"""Contract design aid: how large an effect can this cohort detect, and what would it pay?

Before a contract is signed its designer should know two things the measurement plan
decides: the **minimum detectable effect** (the true relative improvement the plan's method
finds significant, at the plan's confidence, in 80 % of contracts) and the **expected
payment** as a function of the true effect under the plan's payment basis (a basis that pays
for noise shows up as money paid at a true effect of zero).

Both are estimated by simulation with a known truth: for each true effect on a grid, `R`
replications of the plan's units and periods are simulated (`utfall.simulate`, no defects,
a different seed per replication and the same seeds at every grid point, so the curve is
smooth), the outcome panel is computed with the pipeline's own metric SQL
(`utfall.metrics.outcome_panel`, on an in-memory DuckDB: nothing is written, and the clean
rows are what validation would load), the plan's counterfactual method estimates the effect,
and `utfall.payments.propose` computes the payment under the plan's terms (and, for
comparison, on the point estimate).

Power is the share of replications whose confidence interval (two-sided, at the plan's
confidence) lies entirely on the improving side of zero. The MDE is interpolated linearly
between the grid points where the simulated power crosses 80 %; beside it, the normal
approximation (z_{1-a/2} + z_{0.80}) x the mean standard error under no effect is given as
a cross-check. No Dagster, no warehouse file.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import duckdb
import polars as pl

from utfall import metrics, payments
from utfall.estimators.did import WEIGHTS, did_2x2
from utfall.payments import propose
from utfall.plan import Plan
from utfall.simulate import SimulationSpec, simulate, spec_for_plan
from utfall.warehouse.runs import Run

POWER = 0.80
#: The plan's counterfactual methods, by name: (panel, outcome, confidence, plan) -> result.
ESTIMATORS: dict[str, Callable[[pl.DataFrame, str, float, Plan], Any]] = {
    "did_2x2": lambda panel, outcome, confidence, plan: did_2x2(
        panel,
        outcome=outcome,
        confidence=confidence,
        weight=WEIGHTS[plan.counterfactual_parameters["weight"]],
        scale=plan.counterfactual_parameters["scale"],
    ),
}


@dataclass(frozen=True)
class GridPoint:
    """The simulated contracts at one true effect."""

    effect: float  # true relative improvement (0.12 = 12 % fewer)
    replications: int
    power: float  # share significant on the improving side
    mean_estimate: float  # mean estimated relative improvement
    mean_half_width: float  # mean half-width of the relative effect's interval
    mean_payment: Decimal  # mean variable payment under the plan's basis
    mean_payment_point: Decimal  # the same, paid on the point estimate
    payments: tuple[Decimal, ...]  # each replication's variable payment (plan's basis)


@dataclass(frozen=True)
class Design:
    plan: Plan
    employees: int
    replications: int
    at_risk: Decimal  # the variable part's maximum
    grid: tuple[GridPoint, ...]
    mde: float | None  # interpolated; None when the grid never reaches 80 % power
    mde_normal: float  # normal approximation from the standard error under no effect


def variable_maximum(plan: Plan) -> Decimal:
    """The most the outcome-dependent rules can pay (every rule kind, from its module)."""
    return payments.variable_maximum(plan.payment)


def default_grid(plan: Plan) -> list[float]:
    """0 to twice the payment target in eighths of the target (0 to 24 % for 12 %)."""
    targets = [
        float(r["target_relative_reduction"])
        for r in plan.payment["rules"]
        if r["kind"] == "linear_to_target"
    ]
    target = max(targets) if targets else 0.10
    return [round(target * k / 4, 6) for k in range(9)]


def _spec(plan: Plan, employees: int, effect: float, seed: int) -> SimulationSpec:
    return spec_for_plan(plan, employees=employees, effect=effect, seed=seed)


def simulated_effect(plan: Plan, employees: int, effect: float, seed: int) -> dict[str, Any]:
    """One simulated contract's effect estimate for the payment outcome (as stored)."""
    if plan.payment["outcome"] not in {o["id"] for o in plan.outcomes}:  # pragma: no cover
        raise ValueError("the plan's payment outcome is not one of its outcomes")
    outcome = plan.outcome(plan.payment["outcome"])
    panel, _ = simulated_panel(plan, _spec(plan, employees, effect, seed))
    sub = panel.filter(pl.col("outcome") == outcome["id"])
    estimator = ESTIMATORS[plan.counterfactual["method"]]
    result = estimator(sub, outcome["id"], float(plan.counterfactual["confidence"]), plan)
    return result.to_dict()


def simulated_panel(plan: Plan, spec: SimulationSpec) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Simulate ``spec`` (no defects expected) and return the plan's outcome panel, computed
    with the pipeline's metric SQL on an in-memory DuckDB, and the simulation's truth."""
    sim = simulate(spec)
    run = Run(run_id="design", contract_id=plan.contract_id)
    roster_source = plan.data["cohort"]["roster_source"]
    con = duckdb.connect()
    try:
        con.execute("CREATE SCHEMA work")
        con.register("_roster", sim.roster.to_arrow())
        con.register("_spells", sim.spells.to_arrow())
        con.execute(
            "CREATE TABLE work.staging_employee_roster AS SELECT ?::VARCHAR AS contract_id, "
            "?::VARCHAR AS run_id, ?::VARCHAR AS source, personnummer AS person_id, unit_id, "
            "employment_extent::BIGINT AS employment_extent, employed_from::DATE AS "
            "employed_from, employed_to::DATE AS employed_to FROM _roster",
            [plan.contract_id, run.run_id, roster_source],
        )
        con.execute(
            "CREATE TABLE work.staging_sick_leave_spells AS SELECT ?::VARCHAR AS contract_id, "
            "?::VARCHAR AS run_id, s.name AS source, personnummer AS person_id, "
            "spell_start::DATE AS spell_start, spell_end::DATE AS spell_end, "
            "extent::BIGINT AS extent FROM _spells, (SELECT unnest(?::VARCHAR[]) AS name) s",
            [
                plan.contract_id,
                run.run_id,
                [s["name"] for s in plan.sources_of_kind("sick_leave_spells")],
            ],
        )
        panel = metrics.outcome_panel(con, plan, run)
    finally:
        con.close()
    return panel, sim.truth


def _improvement(plan: Plan, effect: dict[str, Any], key: str) -> float:
    decrease = plan.outcome(effect["outcome"])["desired_direction"] == "decrease"
    return -effect[key] if decrease else effect[key]


def _point_terms(plan: Plan) -> dict[str, Any]:
    terms = {
        k: v for k, v in plan.payment.items() if k not in ("threshold_relative_reduction", "tiers")
    }
    return {**terms, "basis": "point_estimate"}


def design(
    plan: Plan,
    employees: int = 2000,
    replications: int = 40,
    effects: Sequence[float] | None = None,
    seed: int = 1,
    progress: Callable[[str], None] | None = None,
) -> Design:
    """Simulate the grid of true effects; see the module docstring."""
    if replications < 2:
        raise ValueError("replications must be at least 2")
    if employees < 1:
        raise ValueError("employees must be at least 1")
    grid = sorted(set(effects if effects is not None else default_grid(plan)))
    if not grid or any(not 0.0 <= e <= 1.0 for e in grid):
        raise ValueError("true effects must lie in [0, 1]")
    say = progress or (lambda msg: print(msg, file=sys.stderr))
    point_terms = _point_terms(plan)
    decrease = plan.outcome(plan.payment["outcome"])["desired_direction"] == "decrease"
    points = []
    for i, effect in enumerate(grid):
        significant, estimates, errors = 0, [], []
        paid: list[Decimal] = []
        paid_point: list[Decimal] = []
        for r in range(replications):
            e = simulated_effect(plan, employees, effect, seed + r)
            low, high = e["relative_ci_low"], e["relative_ci_high"]
            significant += (high < 0) if decrease else (low > 0)
            estimates.append(_improvement(plan, e, "relative_estimate"))
            errors.append((high - low) / 2)
            paid.append(Decimal(propose(plan, e)["variable"]))
            paid_point.append(Decimal(propose(plan, e, terms=point_terms)["variable"]))
        point = GridPoint(
            effect=effect,
            replications=replications,
            power=significant / replications,
            mean_estimate=statistics.fmean(estimates),
            mean_half_width=statistics.fmean(errors),
            mean_payment=(sum(paid, Decimal(0)) / replications).quantize(Decimal("0.01")),
            mean_payment_point=(sum(paid_point, Decimal(0)) / replications).quantize(
                Decimal("0.01")
            ),
            payments=tuple(paid),
        )
        points.append(point)
        say(
            f"[{i + 1}/{len(grid)}] true effect {effect:.1%}: power {point.power:.0%}, "
            f"mean payment {point.mean_payment:,.0f}"
        )
    return Design(
        plan=plan,
        employees=employees,
        replications=replications,
        at_risk=variable_maximum(plan),
        grid=tuple(points),
        mde=_interpolate_mde(points),
        mde_normal=_normal_mde(plan, points),
    )


def _interpolate_mde(points: Sequence[GridPoint]) -> float | None:
    """The smallest effect where the simulated power reaches 80 %, linear between points."""
    for before, after in zip(points, points[1:], strict=False):
        if before.power >= POWER:
            return before.effect
        if after.power >= POWER:
            frac = (POWER - before.power) / (after.power - before.power)
            return before.effect + frac * (after.effect - before.effect)
    if points and points[-1].power >= POWER:
        return points[-1].effect
    return None


def _normal_mde(plan: Plan, points: Sequence[GridPoint]) -> float:
    """(z_{1-a/2} + z_{power}) x the standard error at the smallest simulated effect."""
    nd = statistics.NormalDist()
    confidence = float(plan.counterfactual["confidence"])
    z = nd.inv_cdf(1 - (1 - confidence) / 2)
    se = points[0].mean_half_width / z  # the interval's half-width / z
    return (z + nd.inv_cdf(POWER)) * se


def render(d: Design) -> str:
    """A readable table of the design."""
    plan = d.plan
    cur = plan.payment["currency"]
    confidence = float(plan.counterfactual["confidence"])
    basis = plan.payment["basis"]
    lines = [
        f"{plan.contract_id}: {plan.counterfactual['method']} at {confidence:.0%} confidence, "
        f"{len(plan.treated_units)} treated and {len(plan.comparison_units)} comparison units, "
        f"{d.employees} employees, {d.replications} simulated contracts per true effect",
        f"payment basis: {basis}; amount at risk (variable part): {d.at_risk:,.2f} {cur}",
        "",
        f"{'true effect':>11}  {'power':>5}  {'mean estimate':>13}  "
        f"{'mean payment':>14}  {'of at risk':>10}  {'on point est.':>14}",
    ]
    for p in d.grid:
        share = float(p.mean_payment / d.at_risk) if d.at_risk else 0.0
        lines.append(
            f"{p.effect:>11.1%}  {p.power:>5.0%}  {p.mean_estimate:>13.1%}  "
            f"{p.mean_payment:>14,.0f}  {share:>10.1%}  {p.mean_payment_point:>14,.0f}"
        )
    lines.append("")
    if d.mde is None:
        lines.append(
            f"minimum detectable effect (80 % power): above {d.grid[-1].effect:.1%}, the "
            "largest effect simulated"
        )
    else:
        lines.append(f"minimum detectable effect (80 % power): {d.mde:.1%} (simulated)")
    lines.append(
        f"normal approximation from the standard error: {d.mde_normal:.1%}; power is the "
        f"share of contracts whose {confidence:.0%} interval lies wholly on the improving side"
    )
    return "\n".join(lines)
