"""The `utfall` command: show a plan, simulate deliveries, run a measurement, run the demo,
and simulate a plan's power and expected payment (`design`).

Errors in what the user gave (a plan, a delivery, a key, a warehouse file) print one clear
message and exit 2 (`--debug` shows the traceback); a run that fails publishes nothing.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from utfall import paths
from utfall.commands import status, validator, warehouse_upgrade
from utfall.paths import EXAMPLE_PLAN
from utfall.plan import load_plan
from utfall.progress import Progress
from utfall.warehouse import default_path


def __getattr__(name: str) -> Path:
    """DELIVERIES_ROOT and REPORTS_ROOT as they are now (they follow the working directory
    and $UTFALL_HOME, so they are looked up when used, not fixed at import)."""
    if name == "DELIVERIES_ROOT":
        return paths.deliveries_root()
    if name == "REPORTS_ROOT":
        return paths.reports_root()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _plan_show(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    d = plan.data
    b0, b1 = plan.period("baseline")
    m0, m1 = plan.period("measurement")
    print(f"contract:      {d['contract']['id']} — {d['contract']['title']}")
    print(f"instrument:    {d['contract']['instrument']}")
    print(f"hash:          {plan.hash}")
    print(f"baseline:      {b0} .. {b1}")
    print(f"measurement:   {m0} .. {m1} ({d['periods']['frequency']})")
    print(f"sources:       {', '.join(s['name'] + ' (' + s['kind'] + ')' for s in plan.sources)}")
    print(
        f"units:         {len(plan.treated_units)} treated, {len(plan.comparison_units)} comparison"
    )
    print(f"outcomes:      {', '.join(o['id'] for o in plan.outcomes)}")
    print(
        f"method:        {plan.counterfactual['method']} "
        f"(confidence {plan.counterfactual['confidence']})"
    )
    if plan.payment.get("periods"):
        shown = ", ".join(f"{p['name']} through {p['through']}" for p in plan.payment["periods"])
        claw = "claw-back" if plan.payment.get("clawback") else "no claw-back"
        print(f"payment:       periods {shown} ({claw}; `utfall run --period NAME`)")
    return 0


def simulate_deliveries(
    plan_path: Path,
    out: Path,
    employees: int,
    effect: float,
    defect_rate: float,
    seed: int | None,
    progress: Callable[[str], None] | None = None,
    **scenario: Any,
) -> dict:
    """Write the deliveries `plan_path` expects into `out`, plus truth.json; return truth.

    ``scenario``: further :class:`utfall.simulate.SimulationSpec` fields (treated_level_ratio,
    common_shock, common_shock_start, treated_trend_per_quarter). ``progress`` gets one
    ``[i/n]`` line per step (simulating, then each file written)."""
    from utfall.simulate_plans import simulator_for, write_source, write_truth

    plan = load_plan(plan_path)
    say = progress or (lambda _: None)
    steps = 1 + len(plan.sources)
    seed = plan.counterfactual["seed"] if seed is None else seed
    sim = simulator_for(plan)
    t0 = time.perf_counter()
    if sim is None:
        from utfall.simulate import simulate, spec_for_plan

        spec = spec_for_plan(
            plan,
            employees=employees,
            effect=effect,
            defect_rate=defect_rate,
            seed=seed,
            **scenario,
        )
        result = simulate(spec)
        say(f"[1/{steps}] simulated {employees} employees ({time.perf_counter() - t0:.1f} s)")
        frames = {"employee_roster": result.roster, "sick_leave_spells": result.spells}
        truth = dict(result.truth)
    else:
        simulated = sim.run(plan, seed, employees)
        say(f"[1/{steps}] simulated {sim.name} ({time.perf_counter() - t0:.1f} s)")
        frames, truth = simulated.frames, dict(simulated.truth)
    out.mkdir(parents=True, exist_ok=True)
    for done, source in enumerate(plan.sources, start=2):
        frame = frames[source["kind"]]
        target = write_source(source, frame, out)
        say(f"[{done}/{steps}] wrote {target.name}: {frame.height} rows")
    truth["plan_hash"] = plan.hash
    write_truth(out, truth)
    return truth


def true_effects(
    plan_path: Path, truth: dict, through: str | None = None
) -> dict[str, tuple[float, str]]:
    """Each simulated outcome's true effect and its scale, as the report states it: the
    sick-leave simulator's truth is a relative reduction of the plan's first outcome (the
    report's relative estimate is its negative); the other simulators give the absolute
    effect per outcome id, and for a payment period ending before the measurement does
    (`through`) the effect on the data up to then, where the simulator gives it."""
    if through is not None and through in truth.get("outcomes_at", {}):
        return {k: (float(v), "absolute") for k, v in truth["outcomes_at"][through].items()}
    if "outcomes" in truth:
        return {k: (float(v), "absolute") for k, v in truth["outcomes"].items()}
    plan = load_plan(plan_path)
    return {plan.outcomes[0]["id"]: (-truth["effect"], "relative")}


def _simulate(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    with Progress("simulate") as bar:
        truth = simulate_deliveries(
            Path(args.plan),
            Path(args.out),
            args.employees,
            args.effect,
            args.defect_rate,
            args.seed,
            treated_level_ratio=args.treated_level_ratio,
            common_shock=args.common_shock,
            treated_trend_per_quarter=args.treated_trend,
            progress=bar,
        )
    if "effect" in truth:
        said = f"{args.employees} employees to {args.out} (true effect {truth['effect']:.1%}"
    else:
        effects = ", ".join(
            f"{k} {v:+.4f}" for k, (v, _) in true_effects(Path(args.plan), truth).items()
        )
        said = f"{args.plan} to {args.out} (true effects: {effects}"
    print(f"wrote deliveries for {said}, {time.perf_counter() - t0:.1f} s)")
    return 0


def _run(args: argparse.Namespace) -> int:
    plan = load_plan(args.plan)
    deliveries = Path(args.deliveries or paths.deliveries_root() / plan.contract_id)
    out = Path(args.out or paths.reports_root() / plan.contract_id)
    _measure(
        plan,
        deliveries,
        out,
        Path(args.warehouse or default_path()),
        period=args.period,
        provisional=args.provisional,
    )
    return 0


def _measure(
    plan: Any,
    deliveries: Path,
    out: Path,
    warehouse: Path,
    period: str | None = None,
    provisional: bool = False,
) -> Any:
    """Run `plan` on `deliveries` and print what `utfall run` prints; the RunResult."""
    from utfall.pipeline import run

    with Progress(f"run {plan.contract_id}") as bar:
        result = run(
            plan, warehouse, deliveries, out, progress=bar, period=period, provisional=provisional
        )
    for note in result.notes:
        print(f"note: {note}")
    for e in result.effects:
        relative = (
            f"; relative {e.relative_estimate:+.1%} "
            f"(CI {e.relative_ci_low:+.1%} to {e.relative_ci_high:+.1%})"
            if math.isfinite(e.relative_estimate)
            else ""
        )
        naive = f"; naive comparison {e.naive['estimate']:+.4f}" if e.naive else ""
        print(
            f"{e.outcome}: {e.estimate:+.4f} ({e.confidence:.0%} CI {e.ci_low:+.4f} to "
            f"{e.ci_high:+.4f}){relative}{naive}"
        )
    pay = result.payment
    if pay.get("period"):
        from utfall.payments.periods import PaymentPeriod
        from utfall.pipeline import period_line

        chosen = PaymentPeriod.from_dict({**pay["period"], "earlier": pay["earlier"]})
        print(period_line(chosen))
        print(
            f"cumulative due {pay['cumulative_due']} - paid before {pay['paid_before']} "
            f"{pay['currency']}"
        )
    print(f"proposed payment: {pay['total']} {pay['currency']} (basis {pay['basis']})")
    if pay.get("range"):
        low, point, high = (p["total"] for p in pay["range"])
        print(
            f"payment range: {low} at the least favourable end of the interval, {point} at "
            f"the point estimate, {high} at the most favourable end"
        )
    print(f"warehouse: {warehouse} (run {result.run_id}, published)")
    from utfall.snapshot import snapshot_path

    if snapshot_path(warehouse).is_symlink():
        print(f"analysts' snapshot: {snapshot_path(warehouse)}/ (one Parquet file per mart)")
    print(f"report: {result.report_paths['report.html']}")
    return result


def example_plans() -> list[Path]:
    """The example contracts the demo measures: the sick-leave one first, then the others
    in data/plans (the package's example_plans) by file name."""
    others = sorted(p for p in paths.EXAMPLE_PLANS.glob("*.yaml") if p.name != EXAMPLE_PLAN.name)
    return [EXAMPLE_PLAN, *others]


def _demo(args: argparse.Namespace) -> int:
    from utfall.payments.periods import PeriodRefused

    warehouse = Path(args.warehouse or default_path())
    t0 = time.perf_counter()
    summary: list[str] = []
    for path in example_plans():
        plan = load_plan(path)
        deliveries = paths.deliveries_root() / plan.contract_id
        out = Path(args.out) / plan.contract_id if args.out else None
        out = out or paths.reports_root() / plan.contract_id
        print(f"\n== {plan.contract_id}: {plan.data['contract']['title']}")
        print(f"simulating deliveries for {plan.contract_id} into {deliveries}", file=sys.stderr)
        with Progress("simulate") as bar:
            truth = simulate_deliveries(
                path, deliveries, args.employees, 0.12, 0.01, None, progress=bar
            )
        try:
            result = _measure(plan, deliveries, out, warehouse)
        except PeriodRefused as exc:  # a warehouse where every payment period is approved
            print(f"not measured: {exc}")
            continue
        period = result.payment.get("period")
        through = period["through"] if period else None
        truths = true_effects(path, truth, through)
        at_through = through is not None and through in truth.get("outcomes_at", {})
        if "effect" in truth:
            print(
                f"true simulated effect: {-truth['effect']:+.1%} (see {deliveries / 'truth.json'})"
            )
        for e in result.effects:
            if e.outcome not in truths:
                continue
            true, scale = truths[e.outcome]
            if scale == "relative":
                est, low, high, fmt = (
                    e.relative_estimate,
                    e.relative_ci_low,
                    e.relative_ci_high,
                    "{:+.1%}",
                )
            else:
                est, low, high, fmt = e.estimate, e.ci_low, e.ci_high, "{:+.4f}"
            covered = "covers" if low <= true <= high else "MISSES"
            naive = ""
            if e.naive and scale != "relative":
                naive = (
                    f"; the naive comparison {e.naive['estimate']:+.4f} is off by "
                    f"{e.naive['estimate'] - true:+.4f}"
                )
            judged = f"simulated truth {fmt.format(true)}: the interval {covered} it{naive}"
            if at_through:
                judged = f"measured to {through} (payment period {period['name']}): {judged}"
            elif period and through != plan.data["periods"]["measurement"]["end"]:
                # The truth is simulated for the whole term; this run stops at `through`.
                judged = (
                    f"measured to {through} for payment period {period['name']}; "
                    f"the simulated truth ({fmt.format(true)}) is for the whole term"
                )
            summary.append(
                f"  {plan.contract_id} / {e.outcome} ({e.method}): {fmt.format(est)} "
                f"({e.confidence:.0%} CI {fmt.format(low)} to {fmt.format(high)}), {judged}"
            )
    print(f"\nexample contracts measured ({time.perf_counter() - t0:.0f} s):")
    print("\n".join(summary))
    return 0


def _at_least(minimum: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie between 0 and 1 (0.12 = 12 %), got {text}")
    return value


def _design(args: argparse.Namespace) -> int:
    from utfall.design import design, render

    plan = load_plan(args.plan)
    t0 = time.perf_counter()
    with Progress("design") as bar:
        result = design(
            plan,
            employees=args.employees,
            replications=args.replications,
            effects=args.effects,
            seed=args.seed,
            progress=bar,
        )
    print(render(result))
    print(
        f"({len(result.grid) * args.replications} simulated contracts, "
        f"{time.perf_counter() - t0:.0f} s)"
    )
    return 0


_PLAN_HELP = "the measurement plan (YAML), e.g. data/plans/botkyrka_sick_leave.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="utfall", description="Measure an outcome contract and write the validator report."
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error, not one line"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    plan = sub.add_parser("plan", help="inspect a measurement plan")
    plan_sub = plan.add_subparsers(dest="plan_command", required=True)
    show = plan_sub.add_parser("show", help="validate a plan and print its summary and hash")
    show.add_argument("plan", help=_PLAN_HELP)
    show.set_defaults(func=_plan_show)

    from utfall.commands import export

    export.register(sub)

    sim = sub.add_parser("simulate", help="write synthetic deliveries with a known true effect")
    sim.add_argument("plan", help=_PLAN_HELP)
    sim.add_argument("--out", required=True, help="directory for the delivery files")
    sim.add_argument(
        "--employees",
        type=_at_least(1),
        default=4000,
        help="employees to simulate (4000); persons for a person-level contract's plan",
    )
    sim.add_argument(
        "--effect",
        type=float,
        default=0.12,
        help="true relative reduction for treated units (0.12 = 12 %%)",
    )
    sim.add_argument(
        "--defect-rate",
        type=_share,
        default=0.01,
        help="share of rows made defective, each caught by a rule (0.01 = 1 %%)",
    )
    sim.add_argument("--seed", type=int, default=None, help="default: the plan's seed")
    sim.add_argument(
        "--treated-level-ratio",
        type=float,
        default=1.0,
        help="treated units' sick-leave incidence x this (default 1: equal levels)",
    )
    sim.add_argument(
        "--common-shock",
        type=float,
        default=0.0,
        help="proportional drop in every unit's incidence from the measurement start",
    )
    sim.add_argument(
        "--treated-trend",
        type=float,
        default=0.0,
        help="treated-only trend: incidence x (1 + this x quarters since the baseline start)",
    )
    sim.set_defaults(func=_simulate)

    des = sub.add_parser(
        "design",
        help="simulate the plan: minimum detectable effect and expected payment by true effect",
    )
    des.add_argument("plan", help=_PLAN_HELP)
    des.add_argument(
        "--employees", type=_at_least(1), default=2000, help="employees per simulated contract"
    )
    des.add_argument(
        "--replications",
        type=_at_least(2),
        default=40,
        help="simulated contracts per true effect",
    )
    des.add_argument(
        "--effects",
        type=_share,
        nargs="+",
        default=None,
        help="true relative improvements to simulate (default: 0 to twice the payment target)",
    )
    des.add_argument("--seed", type=_at_least(0), default=1, help="first replication's seed")
    des.set_defaults(func=_design)

    for name, help_text in (
        ("run", "ingest, validate, measure and report, in this process"),
        ("demo", "simulate every example contract's deliveries and measure each"),
    ):
        p = sub.add_parser(name, help=help_text)
        if name == "run":
            p.add_argument("plan", help=_PLAN_HELP)
            p.add_argument("--deliveries", help="default: data/deliveries/<contract id>")
            p.add_argument(
                "--period",
                metavar="NAME",
                help="with payment periods in the plan: measure this one, up to its `through`, "
                "given the earlier periods' approved payments (default: the first period "
                "not yet approved)",
            )
            p.add_argument(
                "--provisional",
                action="store_true",
                help="measure the period although an earlier one is not approved (it counts "
                "as paid nothing); the report says so and the package cannot be approved",
            )
        else:
            p.add_argument(
                "--employees",
                type=_at_least(1),
                default=4000,
                help="employees (sick leave) or persons (person-level contracts) to simulate",
            )
        p.add_argument(
            "--warehouse", help="DuckDB file (default: $UTFALL_WAREHOUSE or data/warehouse.duckdb)"
        )
        p.add_argument(
            "--out",
            help="report directory (default: data/reports/<contract id>)"
            if name == "run"
            else "root of the report directories, one per contract (default: data/reports)",
        )
        p.set_defaults(func=_run if name == "run" else _demo)
    validator.register(sub)
    status.register(sub)
    warehouse_upgrade.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    import duckdb

    from utfall.errors import UserError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"utfall: error: {exc}", file=sys.stderr)
        return 2
    except (duckdb.IOException, duckdb.SerializationException) as exc:
        # A warehouse file that opened but cannot be read further (truncated, damaged).
        if args.debug:
            raise
        where = getattr(args, "warehouse", None) or default_path()
        first = str(exc).splitlines()[0]
        print(
            f"utfall: error: {where}: the warehouse file cannot be read ({first}); it is "
            "probably damaged or truncated: move it aside and re-run to rebuild it; nothing "
            "of this run was published",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("utfall: interrupted; nothing of this run was published", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
