#!/usr/bin/env python3
"""What a contract's payment terms pay when the true effect is known: none, half, full.

    .venv/bin/python scripts/payment_under_uncertainty.py [PLAN] [--replications 30]
        [--employees 2000] [--effects 0 0.06 0.12] [--seed 5000]

For each true effect and replication it simulates the plan's deliveries (a new seed each
time, no defects), runs the whole pipeline into a temporary warehouse, reads the published
effect estimate back, and recomputes the proposed payment from that one stored effect under
each basis with `utfall.payments.propose`: the point estimate, the conservative confidence
bound, and the plan's own terms. It prints, per true effect and basis, the mean outcome
(variable) payment, its spread (sd, 10th and 90th percentile) and the mean as a share of the
amount at risk (the variable part), then the replications and seconds.

The goal it checks for the example contract: with no true effect, the expected outcome
payment under the plan's basis is below 5 % of the amount at risk. The standard error of
each mean is printed so the figure can be read against the noise of the simulation.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from utfall import payments  # noqa: E402
from utfall.cli import EXAMPLE_PLAN, simulate_deliveries  # noqa: E402
from utfall.payments import propose  # noqa: E402
from utfall.plan import Plan, load_plan  # noqa: E402

#: A key for the throw-away warehouses, used only when none is set (never a real one).
SIMULATION_KEY = "simulation-only-key-not-secret-0123456789"
GOAL_SHARE = 0.05


def bases(plan: Plan) -> dict[str, dict[str, Any]]:
    """The payment terms compared: point estimate, conservative bound, the plan's own."""
    common = {
        k: v for k, v in plan.payment.items() if k not in ("threshold_relative_reduction", "tiers")
    }
    out = {
        "point_estimate": {**common, "basis": "point_estimate"},
        "conservative_ci_bound": {**common, "basis": "conservative_ci_bound"},
    }
    if plan_key(plan) not in out:
        out[plan_key(plan)] = plan.payment
    return out


def plan_key(plan: Plan) -> str:
    """The name `bases` gives the plan's own terms."""
    basis = plan.payment["basis"]
    plain = basis in ("point_estimate", "conservative_ci_bound") and not (
        {"threshold_relative_reduction", "tiers"} & set(plan.payment)
    )
    return basis if plain else f"plan: {basis}"


def stored_effect(warehouse: Path, plan: Plan) -> dict[str, Any]:
    """The payment outcome's effect as the run published it (restricted.effects)."""
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        row = con.execute(
            "SELECT result_json FROM restricted.effects WHERE contract_id = ? AND outcome = ?",
            [plan.contract_id, plan.payment["outcome"]],
        ).fetchone()
    finally:
        con.close()
    return json.loads(row[0])


def simulate_payments(
    plan: Plan,
    effects: list[float],
    replications: int,
    employees: int,
    seed: int = 5000,
    progress: Any = None,
) -> dict[float, dict[str, list[Decimal]]]:
    """Variable payment per true effect, basis and replication (Decimal money)."""
    from utfall.pipeline import run

    os.environ.setdefault("UTFALL_PSEUDONYM_KEY", SIMULATION_KEY)
    os.environ.setdefault("UTFALL_CHROMIUM", "off")  # no report.pdf per run (3-10 s)
    say = progress or (lambda msg: print(msg, file=sys.stderr))
    terms = bases(plan)
    out: dict[float, dict[str, list[Decimal]]] = {}
    for effect in effects:
        out[effect] = {name: [] for name in terms}
        for r in range(replications):
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="utfall-pay-") as tmp:
                root = Path(tmp)
                simulate_deliveries(plan.path, root / "d", employees, effect, 0.0, seed + r)
                run(plan, root / "w.duckdb", root / "d", root / "r", progress=lambda _m: None)
                estimate = stored_effect(root / "w.duckdb", plan)
            for name, t in terms.items():
                out[effect][name].append(Decimal(propose(plan, estimate, terms=t)["variable"]))
            say(
                f"effect {effect:.0%} replication {r + 1}/{replications}: relative estimate "
                f"{estimate['relative_estimate']:+.1%} "
                f"(CI {estimate['relative_ci_low']:+.1%} to {estimate['relative_ci_high']:+.1%}) "
                f"({time.perf_counter() - t0:.1f} s)"
            )
    return out


def summarise(values: list[Decimal], at_risk: Decimal) -> dict[str, float]:
    xs = sorted(float(v) for v in values)
    n = len(xs)
    mean = statistics.fmean(xs)
    sd = statistics.stdev(xs) if n > 1 else 0.0
    return {
        "mean": mean,
        "sd": sd,
        "se": sd / n**0.5,
        "p10": xs[int(0.1 * (n - 1))],
        "p90": xs[int(round(0.9 * (n - 1)))],
        "share": mean / float(at_risk),
        "paid": sum(x > 0 for x in xs) / n,
    }


def variable_maximum(plan: Plan) -> Decimal:
    """The amount at risk: what the plan's outcome-dependent rules can pay at most."""
    return payments.variable_maximum(plan.payment)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan", nargs="?", default=str(EXAMPLE_PLAN))
    parser.add_argument("--replications", type=int, default=30)
    parser.add_argument("--employees", type=int, default=2000)
    parser.add_argument("--effects", type=float, nargs="+", default=None)
    parser.add_argument("--seed", type=int, default=5000)
    args = parser.parse_args(argv)
    plan = load_plan(args.plan)
    targets = [
        float(r["target_relative_reduction"])
        for r in plan.payment["rules"]
        if "target_relative_reduction" in r
    ]
    if not args.effects and not targets:
        parser.error("the plan's rules state no target_relative_reduction; give --effects")
    effects = args.effects or [0.0, targets[0] / 2, targets[0]]
    at_risk = variable_maximum(plan)
    t0 = time.perf_counter()
    results = simulate_payments(plan, effects, args.replications, args.employees, args.seed)
    seconds = time.perf_counter() - t0
    print(
        f"{plan.contract_id}: outcome payment (amount at risk {at_risk:,.0f} "
        f"{plan.payment['currency']}) by true effect and basis; {args.employees} employees"
    )
    print(
        f"{'true effect':>11}  {'basis':<24} {'mean':>11} {'± se':>9} {'sd':>11} "
        f"{'p10':>11} {'p90':>11} {'paid':>6} {'% at risk':>9}"
    )
    for effect, by_basis in results.items():
        for name, values in by_basis.items():
            s = summarise(values, at_risk)
            print(
                f"{effect:>11.0%}  {name:<24} {s['mean']:>11,.0f} {s['se']:>9,.0f} "
                f"{s['sd']:>11,.0f} {s['p10']:>11,.0f} {s['p90']:>11,.0f} "
                f"{s['paid']:>6.0%} {s['share']:>9.1%}"
            )
    runs = len(effects) * args.replications
    print(
        f"{args.replications} replications per effect, {runs} pipeline runs, "
        f"{seconds:.0f} s ({seconds / runs:.1f} s per run)"
    )
    if 0.0 in results:
        plan_basis = plan_key(plan)
        null = summarise(results[0.0][plan_basis], at_risk)
        verdict = "meets" if null["share"] < GOAL_SHARE else "misses"
        print(
            f"goal: with no true effect, {plan_basis} pays on average {null['share']:.1%} of "
            f"the amount at risk (± {null['se'] / float(at_risk):.1%}); {verdict} the "
            f"{GOAL_SHARE:.0%} goal"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
