"""Check one source's staged delivery against its quality expectations (pure: no warehouse).

`check_source` runs, for the source's kind, every configured expectation that applies
(severity `off` ones are skipped and absent from the results) and returns one
`ExpectationResult` each, in the configuration's order:

==================  ============  ======================================================
expectation         kinds         judged by GX on
==================  ============  ======================================================
volume_vs_history   all           months in both this and the previous delivery's profile
volume_vs_baseline  spells        measurement months vs their calendar month's baseline mean
periods_present     all           every month from baseline start to measurement end
units_present       roster        one row per plan unit, its eligible employees
null_share          all           the staged frame (columns where null means something
                                  are not judged: the roster's employed_to)
value_ranges        all           the staged frame (set, range and order rules per kind)
==================  ============  ======================================================

null_share and value_ranges also expect at least one row, so an empty delivery fails every
expectation that applies (volume_vs_history only when there is history to compare with).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from utfall.plan import Plan
from utfall.quality import generic, person_kinds, roster, sick_leave
from utfall.quality.checks import CHECKS, Subject
from utfall.quality.config import resolve_config
from utfall.quality.kinds import KindSpec, month_starts
from utfall.quality.results import ExpectationResult

#: The source kinds with quality expectations, by the plan's kind name.
KINDS: dict[str, KindSpec] = {
    spec.kind: spec
    for spec in (
        roster.SPEC,
        sick_leave.SPEC,
        generic.PERSON_SPEC,
        generic.PANEL_SPEC,
        person_kinds.PARTICIPANTS_SPEC,
        person_kinds.LAB_RESULTS_SPEC,
        person_kinds.EMPLOYMENT_STATUS_SPEC,
        person_kinds.PUBLIC_COSTS_SPEC,
    )
}

PROFILE_SCHEMA = {"month": pl.Date, "rows": pl.Int64}


def _spec(kind: str) -> KindSpec:
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(
            f"no quality expectations for source kind {kind!r}; known: {', '.join(KINDS)}"
        ) from None


def _require_columns(spec: KindSpec, staged: pl.DataFrame, what: str) -> None:
    missing = [c for c in spec.columns if c not in staged.columns]
    if missing:  # staged frames come from utfall's own typing: a missing column is a bug
        raise ValueError(f"{what} lacks column(s) {', '.join(missing)} of kind {spec.kind}")


def monthly_profile(kind: str, staged: pl.DataFrame, plan: Plan) -> pl.DataFrame:
    """Rows per month from the baseline start to the measurement end; store it as history.

    Columns `month` (Date, first of the month) and `rows` (Int64), one row per month, months
    without data included with 0. Spells: spells by the month of `spell_start`. Roster:
    employees employed on the first day of the month.
    """
    spec = _spec(kind)
    _require_columns(spec, staged, f"staged frame of kind {kind}")
    months = month_starts(plan)
    return pl.DataFrame(
        {"month": months, "rows": spec.profile(staged, months)}, schema=PROFILE_SCHEMA
    )


def _history(history: pl.DataFrame | None) -> pl.DataFrame | None:
    if history is None:
        return None
    if "month" not in history.columns or "rows" not in history.columns:
        raise ValueError("history must be a monthly profile with columns month and rows")
    return history.select(pl.col("month").cast(pl.Date), pl.col("rows").cast(pl.Int64))


def check_source(
    kind: str,
    source_name: str,
    staged: pl.DataFrame,
    plan: Plan,
    config: dict[str, Any] | None = None,
    history: pl.DataFrame | None = None,
    *,
    delivered_rows: int | None = None,
) -> list[ExpectationResult]:
    """Judge a source's staged (validated, typed) rows; one result per expectation run.

    `config` is the plan's quality section (None: `DEFAULT_CONFIG`; a partial one is laid
    over the defaults); `history` the previous accepted delivery's `monthly_profile` of
    this source, None on the first delivery; `delivered_rows` the raw row count, quoted when
    nothing passed validation. Raises ValueError for an unknown kind, a bad configuration
    or a staged frame without the kind's columns (bugs, not delivery problems).
    """
    spec = _spec(kind)
    settings_by_name = resolve_config(config)["expectations"]
    _require_columns(spec, staged, f"staged frame of source {source_name!r}")
    subject = Subject(
        spec=spec,
        source=source_name,
        staged=staged,
        plan=plan,
        profile=monthly_profile(kind, staged, plan),
        history=_history(history),
        delivered_rows=delivered_rows,
    )
    applicable = set(spec.common_checks) | set(spec.extra_checks)
    results = []
    for name, settings in settings_by_name.items():
        if settings["severity"] == "off" or name not in applicable:
            continue
        success, observed, details = CHECKS[name](subject, settings)
        results.append(
            ExpectationResult(
                source=source_name,
                expectation=name,
                severity=settings["severity"],
                success=success,
                observed=observed,
                details=details,
            )
        )
    return results
