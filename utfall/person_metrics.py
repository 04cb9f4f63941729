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
from utfall.plan import Plan
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
    per_person = diabetes.outcomes(people, labs, window_days=int(params["window_days"]))
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
    """The outcome (entered or sustained work) per participant, as the person frame, and its
    flow."""
    from utfall.domains import person

    source = plan.outcome(outcome_id)["source"]
    people, numeric, categorical, per_person = employment_per_person(con, plan, run, source)
    return person.person_flow(
        per_person,
        people,
        plan.outcome_parameters(outcome_id)["outcome"],
        numeric=numeric,
        categorical=categorical,
        eligibility=eligibility(plan),
    )


FRAMES: dict[str, Callable[[duckdb.DuckDBPyConnection, Plan, Run, str], PersonFrame]] = {
    "hba1c_outcome": hba1c_outcome,
    "employment_outcome": employment_outcome,
}


def payment_inputs(con: duckdb.DuckDBPyConnection, plan: Plan, run: Run) -> dict[str, Any]:
    """What the plan's payment rules read besides the effect, from the staged rows: for a
    rate card on an employment outcome, `events` (utfall.domains.employment.events of the
    treated participants) and counts["persons_treated"]."""
    kinds = {r["kind"] for r in plan.payment["rules"]}
    outcome = plan.outcome(plan.payment["outcome"])
    if "rate_card" not in kinds or outcome["metric"] != "employment_outcome":
        return {}
    from utfall.domains import employment, person

    people, _n, _c, per_person = employment_per_person(con, plan, run, outcome["source"])
    # only eligible participants earn events (the plan's eligibility, as for the estimate)
    criteria = eligibility(plan)
    if criteria:
        ok = people.with_columns(person.eligible_expr(criteria).alias("_ok")).filter("_ok")
        people = people.filter(pl.col("person_id").is_in(ok["person_id"].implode()))
    treated = people.filter(pl.col("treated") == 1)["person_id"]
    mine = per_person.filter(pl.col("person_id").is_in(treated.implode()))
    return {"events": employment.events(mine), "counts": {"persons_treated": treated.len()}}


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
