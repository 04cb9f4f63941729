#!/usr/bin/env python3
"""Simulation study of the DiD estimator against known truth, on both scales.

    .venv/bin/python scripts/simulation_study.py [--replications 200] [--employees 1500]
        [--scenarios a b c d e] [--seed 100000]

Scenarios (units and periods from the example plan, data/plans/botkyrka_sick_leave.yaml):

* a: the plan's design, 16 treated + 18 comparison units, true effect 12 %;
* b: as a, treated units' level 1.5 x the comparison's and a common 15 % drop in every unit's
  sick-leave incidence from the measurement start (parallel in ratios, not in levels);
* c: 3 treated + 15 comparison units, true effect 12 %;
* d: 4 treated + 4 comparison units, true effect 12 %;
* e: no true effect, treated units' incidence rising by 1 % of its level per quarter (a
  treated-only trend: parallel trends fail in both scales).

For each replication (seed ``seed + r``, the same seeds in every scenario) it simulates the
deliveries with `utfall.simulate` (no defects), computes the plan's outcome panel with the
pipeline's own metric SQL (`utfall.design.simulated_panel`, in-memory DuckDB) and estimates
the effect on the payment outcome (short-term sick days per employee) with `did_2x2` on the
absolute and on the relative scale (weights and confidence as in the plan, analytic CR2
inference). Truth per replication: the relative reduction the thinning implies for the
simulated spells (``truth["realized"]["expected_relative_reduction_given_spells"]``, about
0.1187 for a 12 % effect: spells begun before the start and spilling into it are not thinned).

Printed per scenario and scale: the mean true and estimated relative effect, the bias (mean
estimate minus truth, in percentage points, with its Monte Carlo standard error), the coverage
of the 95 % interval of the relative effect (with its MC SE), the mean half-width, and the
share of replications where the event study's joint pre-test
(``diagnostics["event_study"]["pre_test"]["p_value"]``) and the linear pre-trend test
(``diagnostics["pre_trend"]["p_value"]``) reject at 5 % (both are computed on levels, so they
do not depend on the scale). Then the replications and seconds.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from utfall.cli import EXAMPLE_PLAN  # noqa: E402
from utfall.design import simulated_panel  # noqa: E402
from utfall.estimators.did import WEIGHTS, did_2x2  # noqa: E402
from utfall.plan import Plan, load_plan  # noqa: E402
from utfall.simulate import SimulationSpec, spec_for_plan  # noqa: E402

SCALES = ("absolute", "relative")


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    n_treated: int | None = None  # None: the plan's units
    n_comparison: int | None = None
    effect: float = 0.12
    sim: dict[str, Any] = field(default_factory=dict)  # extra SimulationSpec fields


SCENARIOS = {
    "a": Scenario("a", "plan design 16+18, effect 12 %"),
    "b": Scenario(
        "b",
        "16+18, treated level 1.5x, common 15 % drop at start",
        sim={"treated_level_ratio": 1.5, "common_shock": 0.15},
    ),
    "c": Scenario("c", "3 treated + 15 comparison, effect 12 %", 3, 15),
    "d": Scenario("d", "4 treated + 4 comparison, effect 12 %", 4, 4),
    "e": Scenario(
        "e",
        "16+18, no effect, treated trend +1 %/quarter",
        effect=0.0,
        sim={"treated_trend_per_quarter": 0.01},
    ),
}


def scenario_plan(base: Plan, scenario: Scenario, workdir: Path) -> Plan:
    """The plan with the scenario's cohort units (the first n of each group of ``base``)."""
    if scenario.n_treated is None and scenario.n_comparison is None:
        return base
    data = copy.deepcopy(base.data)
    cohort = data["cohort"]
    cohort["treated_units"] = list(base.treated_units)[: scenario.n_treated]
    cohort["comparison_units"] = list(base.comparison_units)[: scenario.n_comparison]
    path = workdir / f"plan_{scenario.name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return load_plan(path)


def spec_for(plan: Plan, scenario: Scenario, employees: int, seed: int) -> SimulationSpec:
    return spec_for_plan(
        plan, employees=employees, effect=scenario.effect, seed=seed, **scenario.sim
    )


def replicate(plan: Plan, scenario: Scenario, employees: int, seed: int) -> dict[str, Any]:
    """One replication: the true relative effect and each scale's estimate, CI and pre-tests."""
    outcome = plan.payment["outcome"]
    panel, truth = simulated_panel(plan, spec_for(plan, scenario, employees, seed))
    sub = panel.filter(pl.col("outcome") == outcome)
    expected = truth["realized"]["expected_relative_reduction_given_spells"]
    out: dict[str, Any] = {"truth": -(expected or 0.0)}  # a reduction is a negative effect
    for scale in SCALES:
        r = did_2x2(
            sub,
            outcome=outcome,
            confidence=float(plan.counterfactual["confidence"]),
            weight=WEIGHTS[plan.counterfactual_parameters["weight"]],
            scale=scale,
        )
        out[scale] = {
            "estimate": r.relative_estimate,
            "ci_low": r.relative_ci_low,
            "ci_high": r.relative_ci_high,
        }
        out["event_study_p"] = r.diagnostics["event_study"]["pre_test"]["p_value"]
        out["pre_trend_p"] = r.diagnostics["pre_trend"]["p_value"]
    return out


def _mean_se(xs: Sequence[float]) -> tuple[float, float]:
    m = statistics.fmean(xs)
    se = statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else math.nan
    return m, se


def _reject(ps: Sequence[float | None]) -> float | None:
    tested = [p for p in ps if p is not None and math.isfinite(p)]
    return sum(p < 0.05 for p in tested) / len(tested) if tested else None


def summarise(reps: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per scale: bias (estimate - truth) with MC SE, coverage with MC SE, half-width, tests."""
    truths = [r["truth"] for r in reps]
    rows = {}
    for scale in SCALES:
        est = [r[scale]["estimate"] for r in reps]
        bias, bias_se = _mean_se([e - t for e, t in zip(est, truths, strict=True)])
        covered = [r[scale]["ci_low"] < r["truth"] < r[scale]["ci_high"] for r in reps]
        cov = sum(covered) / len(covered)
        rows[scale] = {
            "replications": len(reps),
            "mean_truth": statistics.fmean(truths),
            "mean_estimate": statistics.fmean(est),
            "bias": bias,
            "bias_se": bias_se,
            "coverage": cov,
            "coverage_se": math.sqrt(cov * (1 - cov) / len(covered)),
            "mean_half_width": statistics.fmean(
                (r[scale]["ci_high"] - r[scale]["ci_low"]) / 2 for r in reps
            ),
            "event_study_reject": _reject([r["event_study_p"] for r in reps]),
            "pre_trend_reject": _reject([r["pre_trend_p"] for r in reps]),
        }
    return rows


def run_scenario(
    scenario: Scenario,
    replications: int,
    employees: int,
    seed: int,
    base: Plan | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    base = base or load_plan(EXAMPLE_PLAN)
    with tempfile.TemporaryDirectory(prefix="utfall-simstudy-") as tmp:
        plan = scenario_plan(base, scenario, Path(tmp))
        reps = []
        for r in range(replications):
            reps.append(replicate(plan, scenario, employees, seed + r))
            if progress and (r + 1) % max(1, replications // 5) == 0:
                progress(f"  {scenario.name}: {r + 1}/{replications}")
    return summarise(reps)


def _pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}"


def render(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    head = (
        f"{'scen':<4} {'scale':<8} {'R':>4} {'truth%':>7} {'est%':>7} {'bias pp (MC SE)':>16} "
        f"{'cover% (MC SE)':>15} {'halfw pp':>8} {'ES rej%':>7} {'PT rej%':>7}"
    )
    lines = [head, "-" * len(head)]
    for name, rows in results.items():
        for scale, s in rows.items():
            lines.append(
                f"{name:<4} {scale:<8} {s['replications']:>4} {_pct(s['mean_truth'], 2):>7} "
                f"{_pct(s['mean_estimate'], 2):>7} "
                f"{_pct(s['bias'], 2) + ' (' + _pct(s['bias_se'], 2) + ')':>16} "
                f"{_pct(s['coverage']) + ' (' + _pct(s['coverage_se']) + ')':>15} "
                f"{_pct(s['mean_half_width'], 2):>8} {_pct(s['event_study_reject']):>7} "
                f"{_pct(s['pre_trend_reject']):>7}"
            )
    lines.append("")
    lines.extend(f"  {s.name}: {s.description}" for s in SCENARIOS.values() if s.name in results)
    lines.append(
        "  truth/est: relative effect (negative = fewer sick days); bias = mean(est - truth); "
        "cover: 95 % CI of the relative effect covers the truth; ES/PT rej: event-study joint "
        "pre-test / linear pre-trend test reject at 5 % (on levels, the same for both scales)"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replications", "-R", type=int, default=200)
    ap.add_argument("--employees", type=int, default=1500)
    ap.add_argument("--scenarios", nargs="+", choices=sorted(SCENARIOS), default=sorted(SCENARIOS))
    ap.add_argument("--seed", type=int, default=100000)
    args = ap.parse_args(argv)
    if args.replications < 2:
        ap.error("--replications must be at least 2")
    t0 = time.perf_counter()
    base = load_plan(EXAMPLE_PLAN)
    results = {}
    for name in args.scenarios:
        t1 = time.perf_counter()
        results[name] = run_scenario(
            SCENARIOS[name],
            args.replications,
            args.employees,
            args.seed,
            base,
            progress=lambda msg: print(msg, file=sys.stderr, flush=True),
        )
        print(f"scenario {name}: {time.perf_counter() - t1:.1f} s", file=sys.stderr, flush=True)
    print(render(results))
    print(
        f"\n{args.replications} replications per scenario, {args.employees} employees, "
        f"seeds {args.seed}..{args.seed + args.replications - 1}; "
        f"{time.perf_counter() - t0:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
