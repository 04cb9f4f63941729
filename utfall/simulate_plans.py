"""Which simulator writes a plan's deliveries, chosen by the plan's sources, and how each
simulated frame is written as the plan's source expects it (columns renamed to the delivered
names, CSV in the plan's dialect or Parquet).

The sick-leave simulator (utfall.simulate) serves plans whose sources are an employee roster
and sick-leave spells; the person-level contracts' simulators (utfall.simulate_cohorts) are
registered here, one entry each, with the test that says which plans they serve. A plan no
simulator serves gets one line saying so and which plans can be simulated.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from utfall.errors import UserError
from utfall.plan import Plan

#: The sick-leave simulator's kinds (utfall.simulate).
SICK_LEAVE_KINDS = frozenset({"employee_roster", "sick_leave_spells"})


@dataclass(frozen=True)
class Simulated:
    """Frames keyed by source kind (canonical column names, outcome columns by their plan
    names) and the truth: ``truth["outcomes"][outcome id]`` is the true effect the plan's
    method estimates for that outcome."""

    frames: dict[str, pl.DataFrame]
    truth: dict[str, Any]


@dataclass(frozen=True)
class PlanSimulator:
    name: str
    serves: str  # what plans it serves, for the message when none does
    applies: Callable[[Plan], bool]
    run: Callable[[Plan, int, int], Simulated]  # (plan, seed, population)


def _iop_applies(plan: Plan) -> bool:
    sources = plan.sources
    return (
        len(sources) == 1
        and sources[0]["kind"] == "unit_panel"
        and set(sources[0].get("outcome_columns") or {}) == {"share_in_activity"}
        and "treatment_start" in sources[0]["columns"]
    )


def _iop_run(plan: Plan, seed: int, _population: int) -> Simulated:
    from utfall.simulate_cohorts import iop_followup

    b0, b1 = plan.period("baseline")
    m0, m1 = plan.period("measurement")
    quarters = _quarters(b0, b1), _quarters(m0, m1)
    if b0 != _quarter_start(2021, 0):
        raise UserError(
            f"{plan.contract_id}: the IOP follow-up simulator starts its series in 2021Q1; the "
            f"plan's baseline starts {b0}"
        )
    cohort = iop_followup(seed=seed, baseline_quarters=quarters[0], followup_quarters=quarters[1])
    truth = dict(cohort.truth)
    truth["outcomes"] = {
        o["id"]: cohort.truth["att"][o["parameters"]["column"]] for o in plan.outcomes
    }
    return Simulated({"unit_panel": cohort.frames["indicator_delivery"]}, truth)


def _quarter_start(year: int, q: int):
    import datetime as dt

    return dt.date(year + q // 4, 3 * (q % 4) + 1, 1)


def _quarters(start, end) -> int:
    return (end.year - start.year) * 4 + (end.month - start.month) // 3 + 1


def _health_applies(plan: Plan) -> bool:
    return sorted(s["kind"] for s in plan.sources) == ["lab_results", "participants"] and all(
        o["metric"] == "hba1c_outcome" for o in plan.outcomes
    )


def _health_run(plan: Plan, seed: int, population: int) -> Simulated:
    from utfall.simulate_cohorts import health_cohort

    # a programme effect of -1 mmol/mol at 12 and 24 months: the share below 42 about
    # doubles, the size of effect the example bond pays in full for; 4 % of persons outside
    # the bond's eligibility (age 50-60, baseline 42-47), which the plan must exclude; the
    # lab file also holds fasting glucose (some in mg/dL), weight and BMI, as a region's would
    cohort = health_cohort(
        seed=seed,
        population=population,
        effect_12m=-1.0,
        effect_24m=-1.0,
        ineligible=0.04,
        other_analytes=True,
    )
    truth = dict(cohort.truth)
    truth["outcomes"] = {
        o["id"]: cohort.truth["att"][plan.outcome_parameters(o["id"])["outcome"]]
        for o in plan.outcomes
    }
    frames = {"participants": cohort.participants, **cohort.frames}
    return Simulated(frames, truth)


#: The employment simulator's metrics, each with the source kind it reads.
EMPLOYMENT_METRICS = {"employment_outcome": "employment_status", "public_cost": "public_costs"}


def _employment_applies(plan: Plan) -> bool:
    kinds = [s["kind"] for s in plan.sources]
    others = set(kinds) - {"participants"}
    return (
        kinds.count("participants") == 1
        and len(kinds) == len(set(kinds))
        and bool(others)
        and others <= set(EMPLOYMENT_METRICS.values())
        and all(o["metric"] in EMPLOYMENT_METRICS for o in plan.outcomes)
    )


def _employment_truth_key(plan: Plan, outcome: dict) -> str:
    params = plan.outcome_parameters(outcome["id"])
    if outcome["metric"] == "public_cost":
        return f"public_cost_{params['months']}m"
    return params["outcome"]


def _employment_run(plan: Plan, seed: int, population: int) -> Simulated:
    from utfall.simulate_cohorts import FOLLOW_UP_END, employment_cohort

    end = plan.period("measurement")[1]
    if end.replace(day=1) != FOLLOW_UP_END:
        raise UserError(
            f"{plan.contract_id}: the employment simulator follows persons up to "
            f"{FOLLOW_UP_END:%Y-%m}; the plan's measurement ends {end}"
        )
    windows = tuple(
        int(plan.outcome_parameters(o["id"])["months"])
        for o in plan.outcomes
        if o["metric"] == "public_cost"
    )
    throughs = tuple(
        dt.date.fromisoformat(p["through"])
        for p in plan.payment.get("periods") or ()
        if dt.date.fromisoformat(p["through"]) != end
    )
    cohort = employment_cohort(
        seed=seed, population=population, cost_windows=windows, follow_up_ends=throughs
    )
    truth = dict(cohort.truth)
    keys = {o["id"]: _employment_truth_key(plan, o) for o in plan.outcomes}
    truth["outcomes"] = {k: cohort.truth["att"][v] for k, v in keys.items()}
    # what a run of each earlier payment period estimates (its data end at `through`)
    truth["outcomes_at"] = {
        at: {k: att[v] for k, v in keys.items() if v in att}
        for at, att in cohort.truth["att_at"].items()
    }
    truth.pop("att_at")
    truth["savings"] = {
        k: cohort.truth["savings"][v] for k, v in keys.items() if v in cohort.truth["savings"]
    }
    kinds = {s["kind"] for s in plan.sources}
    frames = {"participants": cohort.participants}
    frames.update({k: f for k, f in cohort.frames.items() if k in kinds})
    return Simulated(frames, truth)


#: Simulators of plans that are not sick-leave plans, tried in order.
SIMULATORS: list[PlanSimulator] = [
    PlanSimulator(
        "iop_followup",
        "an IOP follow-up (one unit_panel source with treatment_start and outcome column "
        "share_in_activity, quarterly from 2021-01-01)",
        _iop_applies,
        _iop_run,
    ),
    PlanSimulator(
        "health_cohort",
        "a health bond (sources participants and lab_results, hba1c_outcome outcomes)",
        _health_applies,
        _health_run,
    ),
    PlanSimulator(
        "employment_cohort",
        "an employment contract (sources participants and employment_status and/or "
        "public_costs, employment_outcome and public_cost outcomes, measured to 2025-12)",
        _employment_applies,
        _employment_run,
    ),
]


def simulator_for(plan: Plan) -> PlanSimulator | None:
    """The simulator serving `plan`, None for a sick-leave plan; UserError if none does."""
    kinds = {s["kind"] for s in plan.sources}
    if kinds <= SICK_LEAVE_KINDS:
        return None
    for sim in SIMULATORS:
        if sim.applies(plan):
            return sim
    served = "; ".join(
        ["sick leave (sources employee_roster and sick_leave_spells)"]
        + [s.serves for s in SIMULATORS]
    )
    raise UserError(
        f"cannot simulate plan {plan.contract_id}: no simulator serves its sources "
        f"({', '.join(s['name'] + ' (' + s['kind'] + ')' for s in plan.sources)}); "
        f"simulators exist for: {served}"
    )


def write_source(source: dict[str, Any], frame: pl.DataFrame, out: Path) -> Path:
    """Write `frame` (canonical names) as `source` is delivered: the plan's column names, its
    CSV dialect (delimiter, encoding, decimal comma) or Parquet. Returns the file written."""
    names = dict(source["columns"])
    names.update(source.get("outcome_columns") or {})
    names.update({k: v["column"] for k, v in (source.get("covariates") or {}).items()})
    frame = frame.select([frame[c].alias(names[c]) for c in frame.columns if c in names])
    target = out / source["path"].replace("*", "")
    target.parent.mkdir(parents=True, exist_ok=True)
    if source["format"] == "csv":
        opts = source.get("csv", {})
        comma = opts.get("decimal") == ","
        text = frame.write_csv(separator=opts.get("delimiter", ","), decimal_comma=comma)
        target.write_bytes(text.encode(opts.get("encoding", "utf-8")))
    else:
        frame.write_parquet(target)
    return target


def write_truth(out: Path, truth: dict[str, Any]) -> None:
    (out / "truth.json").write_text(
        json.dumps(truth, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8"
    )
