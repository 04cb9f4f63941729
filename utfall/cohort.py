"""Does the roster hold the plan's units? Missing units are an error (or, if the plan says
so, a warning the report lists); roster units the plan does not name are listed.

A treated unit spelt differently in the roster (`hemtj-01` for `HEMTJ-01`) would otherwise
silently leave the cohort and change the payment.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import duckdb
import polars as pl

from utfall import warehouse
from utfall.errors import UserError
from utfall.plan import Plan
from utfall.warehouse.runs import Run


class CohortError(UserError):
    """Plan units that do not occur in the roster."""


@dataclass(frozen=True)
class CohortCheck:
    units: pl.DataFrame  # unit_id, group, status (present|missing|not_in_plan), employees, note

    @property
    def missing(self) -> list[str]:
        return self.units.filter(pl.col("status") == "missing")["unit_id"].to_list()

    @property
    def not_in_plan(self) -> list[str]:
        return self.units.filter(pl.col("status") == "not_in_plan")["unit_id"].to_list()

    def messages(self) -> list[str]:
        out = []
        for r in self.units.filter(pl.col("status") == "missing").iter_rows(named=True):
            out.append(
                f"{r['group']} unit {r['unit_id']!r} does not occur in the roster"
                + (f" ({r['note']})" if r["note"] else "")
            )
        if self.not_in_plan:
            out.append(
                "roster units the plan does not name (left out of the cohort): "
                + ", ".join(self.not_in_plan)
            )
        return out


def _hint(unit: str, roster_units: list[str]) -> str | None:
    folded = {u.strip().casefold(): u for u in roster_units}
    if unit.strip().casefold() in folded:
        return (
            f"the roster has {folded[unit.strip().casefold()]!r}, which differs in case or spaces"
        )
    close = difflib.get_close_matches(unit, roster_units, n=1, cutoff=0.8)
    return f"did you mean {close[0]!r}?" if close else None


def check_units(plan: Plan, roster: pl.DataFrame) -> CohortCheck:
    """Compare the plan's units with the units of the roster's valid rows (pure)."""
    counts = roster.group_by("unit_id").agg(pl.col("person_id").n_unique().alias("employees"))
    have = dict(counts.iter_rows())
    roster_units = sorted(have)
    rows = []
    for group, units in (("treated", plan.treated_units), ("comparison", plan.comparison_units)):
        for u in units:
            present = u in have
            rows.append(
                {
                    "unit_id": u,
                    "group": group,
                    "status": "present" if present else "missing",
                    "employees": have.get(u, 0),
                    "note": None if present else _hint(u, roster_units),
                }
            )
    named = set(plan.treated_units) | set(plan.comparison_units)
    for u in roster_units:
        if u not in named:
            rows.append(
                {
                    "unit_id": u,
                    "group": None,
                    "status": "not_in_plan",
                    "employees": have[u],
                    "note": None,
                }
            )
    schema = {
        "unit_id": pl.String,
        "group": pl.String,
        "status": pl.String,
        "employees": pl.Int64,
        "note": pl.String,
    }
    return CohortCheck(pl.DataFrame(rows, schema=schema))


def check_cohort(con: duckdb.DuckDBPyConnection, plan: Plan, run: Run) -> CohortCheck:
    """Check the run's valid roster against the plan; store the result; raise when a plan
    unit is missing and the plan's `cohort.unit_check` is `error` (the default)."""
    roster = warehouse.read_table(
        con,
        "SELECT unit_id, person_id FROM work.staging_employee_roster "
        "WHERE contract_id = $contract_id AND run_id = $run_id AND source = $source",
        {**run.scope, "source": plan.data["cohort"]["roster_source"]},
    )
    result = check_units(plan, roster)
    with warehouse.transaction(con):
        warehouse.insert_rows(con, "work.cohort_units", result.units, run.scope)
    if result.missing and plan.unit_check == "error":
        raise CohortError(
            "plan units missing from the roster: "
            + "; ".join(m for m in result.messages() if "does not occur" in m)
            + ". Fix the roster or the plan (cohort.unit_check: warn turns this into a "
            "warning the report lists)"
        )
    return result
