"""Outcome metrics on the person-level kinds (participants + lab_results, ...): each builds
the estimators' `person` frame (person_id, treated, y, the participants' covariates) from a
run's staged rows, by the pure outcome definitions of utfall.domains. Used by the pipeline and
by `utfall verify` alike (through recompute.person_frame), so a replication package's staging
Parquet files give the same frame. One function per metric, registered in FRAMES.

The participants source's `eligibility` (plan key) applies to both arms before estimation.
Persons outside it are excluded, and persons without the outcome (no follow-up sample in the
window) or a covariate are dropped, never imputed; each metric returns, beside its frame, the
flow that counts them per arm and reason (utfall.domains.person.person_flow), which the
report shows and `utfall verify` recomputes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import duckdb
import polars as pl

from utfall import warehouse
from utfall.plan import METRICS, Plan
from utfall.warehouse.runs import Run

#: A metric's person frame and its flow of persons (utfall.domains.person.person_flow).
PersonFrame = tuple[pl.DataFrame, dict[str, Any]]


def participants_frame(
    con: duckdb.DuckDBPyConnection, plan: Plan, run: Run
) -> tuple[pl.DataFrame, tuple[str, ...], tuple[str, ...]]:
    """The plan's participants source's staged rows with its covariates as columns, and the
    covariates' names (numeric, categorical): age and sex, then the plan's."""
    from utfall.validate import staged_generic

    (source,) = plan.sources_of_kind("participants")
    staged = staged_generic(con, plan, run, source["name"])
    covariates = source.get("covariates") or {}
    numeric = ("age", *(k for k, v in covariates.items() if v["type"] == "numeric"))
    categorical = ("sex", *(k for k, v in covariates.items() if v["type"] != "numeric"))
    return staged, numeric, categorical


def eligibility(plan: Plan) -> dict[str, dict[str, float]]:
    """The participants source's eligibility criteria (column -> min/max), in plan order."""
    (source,) = plan.sources_of_kind("participants")
    return dict(source.get("eligibility") or {})


def hba1c_outcome(
    con: duckdb.DuckDBPyConnection, plan: Plan, run: Run, outcome_id: str
) -> PersonFrame:
    """The outcome's HbA1c measure per participant (utfall.domains.diabetes.outcomes on the
    staged lab results), as the person frame, and its flow."""
    from utfall.domains import diabetes, person

    params = plan.outcome_parameters(outcome_id)
    people, numeric, categorical = participants_frame(con, plan, run)
    if "baseline_hba1c" not in people.columns:
        people = people.with_columns(pl.lit(None, dtype=pl.Float64).alias("baseline_hba1c"))
    labs = warehouse.read_table(
        con,
        "SELECT person_id, sample_date, value AS hba1c_mmol_mol FROM work.staging_lab_results "
        "WHERE contract_id = $contract_id AND run_id = $run_id AND source = $source "
        "AND analyte = 'HbA1c' "
        "ORDER BY _file, _line",
        {**run.scope, "source": plan.outcome(outcome_id)["source"]},
    )
    period = plan.payment_period
    per_person = diabetes.outcomes(
        people,
        labs,
        window_days=int(params["window_days"]),
        # an interim period sees what was observed by its through; the final one (ending with
        # the measurement period) everything delivered, as a run without periods
        observed_by=period.through if period is not None and period.kind == "interim" else None,
    )
    return person.person_flow(
        per_person,
        people,
        params["outcome"],
        numeric=numeric,
        categorical=categorical,
        eligibility=eligibility(plan),
    )


def employment_per_person(con: duckdb.DuckDBPyConnection, plan: Plan, run: Run, source: str):
    """(participants, their numeric and categorical covariates, per-person employment
    outcomes to the end of the measurement period: utfall.domains.employment.outcomes)."""
    from utfall.domains import employment

    people, numeric, categorical = participants_frame(con, plan, run)
    status = warehouse.read_table(
        con,
        "SELECT person_id, month, status, earnings FROM work.staging_employment_status "
        "WHERE contract_id = $contract_id AND run_id = $run_id AND source = $source "
        "ORDER BY _file, _line",
        {**run.scope, "source": source},
    )
    end = plan.period("measurement")[1]
    per_person = employment.outcomes(status, people.select("person_id", "enrolled_on"), end)
    return people, numeric, categorical, per_person


def employment_outcome(
    con: duckdb.DuckDBPyConnection, plan: Plan, run: Run, outcome_id: str
) -> PersonFrame:
    """The outcome (entered or sustained work, or earnings) per participant, as the person
    frame, and its flow; earnings are the exact sum delivered for the months after enrolment
    (a month with none delivered counts 0: earnings are delivered where there are some)."""
    from utfall.domains import person

    source = plan.outcome(outcome_id)["source"]
    people, numeric, categorical, per_person = employment_per_person(con, plan, run, source)
    per_person = per_person.with_columns(pl.col("earnings_total").alias("earnings"))
    return person.person_flow(
        per_person,
        people,
        plan.outcome_parameters(outcome_id)["outcome"],
        numeric=numeric,
        categorical=categorical,
        eligibility=eligibility(plan),
    )


def public_cost_per_person(
    con: duckdb.DuckDBPyConnection, plan: Plan, run: Run, outcome_id: str
) -> PersonFrame:
    """The outcome's public cost per participant (utfall.domains.public_costs.after_enrolment
    over the window `months` after the enrolment month, exact sums), as the person frame
    (y = the cost as Float64; amounts below 10^13 are exact to the öre in a double), and its
    flow (a participant whose window is not complete counts as no outcome)."""
    from utfall.domains import person, public_costs

    people, numeric, categorical = participants_frame(con, plan, run)
    costs = warehouse.read_table(
        con,
        "SELECT person_id, month, cost_type, amount FROM work.staging_public_costs "
        "WHERE contract_id = $contract_id AND run_id = $run_id AND source = $source "
        "ORDER BY _file, _line",
        {**run.scope, "source": plan.outcome(outcome_id)["source"]},
    )
    months = int(plan.outcome_parameters(outcome_id)["months"])
    end = plan.period("measurement")[1]
    per_person, left_out = public_costs.after_enrolment(
        costs, people.select("person_id", "enrolled_on"), months, end
    )
    if per_person.height == 0 and left_out:
        from utfall.errors import MeasurementError

        raise MeasurementError(
            f"outcome {outcome_id!r}: the window of {months} months after the enrolment month "
            f"ends after the measurement period ({end}) for every one of the {left_out} "
            "participants, so none can be measured yet; a shorter window (parameter months) or "
            "a later measurement end is needed"
        )
    return person.person_flow(
        per_person,
        people,
        "cost_total",
        numeric=numeric,
        categorical=categorical,
        eligibility=eligibility(plan),
    )


FRAMES: dict[str, Callable[[duckdb.DuckDBPyConnection, Plan, Run, str], PersonFrame]] = {
    "hba1c_outcome": hba1c_outcome,
    "employment_outcome": employment_outcome,
    "public_cost": public_cost_per_person,
}


def payment_inputs(con: duckdb.DuckDBPyConnection, plan: Plan, run: Run) -> dict[str, Any]:
    """What the plan's payment rules read besides the effect, from the staged rows, by what
    the rules read (utfall.payments.base.Rule.reads), not by contract:

    * `events` (a rate card on an employment outcome): utfall.domains.employment.events of
      the treated participants, with counts["persons_treated"] = the treated participants;
    * `counts` (e.g. share_of_savings: savings = saving per person x persons treated) on an
      outcome of person data (public_cost, person_value, ...): counts["persons_treated"] =
      the treated persons of the payment outcome's person frame, i.e. those the effect per
      person was measured on.
    """
    supplied = supplied_inputs(plan)
    outcome = plan.outcome(plan.payment["outcome"])
    if "events" in supplied:
        from utfall.domains import employment, person

        people, _n, _c, per_person = employment_per_person(con, plan, run, outcome["source"])
        # only eligible participants earn events (the plan's eligibility, as for the estimate)
        criteria = eligibility(plan)
        if criteria:
            ok = people.filter(person.eligible_expr(criteria))
            people = people.filter(pl.col("person_id").is_in(ok["person_id"].implode()))
        treated = people.filter(pl.col("treated") == 1)["person_id"]
        mine = per_person.filter(pl.col("person_id").is_in(treated.implode()))
        return {"events": employment.events(mine), "counts": {"persons_treated": treated.len()}}
    if "counts" in supplied:
        from utfall.recompute import person_frame

        frame = person_frame(con, plan, run, outcome["id"])
        return {"counts": {"persons_treated": int(frame["treated"].sum())}}
    return {}


def supplied_inputs(plan: Plan) -> frozenset[str]:
    """The inputs besides the effect that `payment_inputs` gives a run of `plan`, decided by
    the plan alone: events (and counts) when a rule reads events and the payment outcome is
    an employment outcome; counts when a rule reads counts and the payment outcome is
    measured on person data. Nothing measures a savings total."""
    from utfall.payments.base import registry

    reads = set().union(*(registry()[r["kind"]].reads for r in plan.payment["rules"]))
    outcome = plan.outcome(plan.payment["outcome"])
    if "events" in reads and outcome["metric"] == "employment_outcome":
        return frozenset({"events", "counts"})
    if "counts" in reads and METRICS[outcome["metric"]].data == "person":
        return frozenset({"counts"})
    return frozenset()


#: Why a run of a plan may not measure an input a payment rule needs.
_NOT_MEASURED = {
    "events": "outcome events come from a payment outcome of metric employment_outcome",
    "counts": "persons treated come from a payment outcome measured on person data",
    "savings_total": "no run measures a savings total (savings: per_person_effect pays on "
    "the measured effect per person x persons treated)",
}


def missing_payment_inputs(plan: Plan) -> list[str]:
    """One sentence per payment rule that needs an input a run of `plan` does not measure
    (`supplied_inputs`): such a run would stop at its payment step, after everything else."""
    from utfall.payments.base import registry

    supplied = supplied_inputs(plan)
    problems = []
    for i, rule in enumerate(plan.payment["rules"]):
        for name in sorted(registry()[rule["kind"]].inputs_needed(rule) - supplied):
            problems.append(
                f"payment.rules[{i}] ({rule['kind']}) needs {name}, which a run of this plan "
                f"does not measure: {_NOT_MEASURED.get(name, 'nothing supplies it')}"
            )
    return problems


def require_payment_inputs(plan: Plan) -> None:
    """Refuse, before a run starts, a plan whose payment a run cannot compute."""
    from utfall.payments.base import PaymentInputError

    problems = missing_payment_inputs(plan)
    if problems:
        raise PaymentInputError(
            f"{plan.path}: a run cannot compute this plan's payment: " + "; ".join(problems)
        )


def lab_conversions(con: duckdb.DuckDBPyConnection, plan: Plan, run: Run) -> list[dict[str, Any]]:
    """Valid lab rows per source, analyte and conversion (how each value was read: ifcc, ngsp,
    mono_s, mg_dl, ...), for the report's data quality; empty when the plan has no lab source."""
    names = [s["name"] for s in plan.sources_of_kind("lab_results")]
    if not names:
        return []
    rows = warehouse.read_table(
        con,
        "SELECT source, analyte, conversion, unit, count(*) AS rows "
        "FROM work.staging_lab_results "
        "WHERE contract_id = $contract_id AND run_id = $run_id GROUP BY ALL "
        "ORDER BY source, analyte, conversion",
        run.scope,
    )
    return [{**r, "rows": int(r["rows"])} for r in rows.to_dicts()]
