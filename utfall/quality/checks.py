"""The expectations, each judged by Great Expectations on the staged frame or on a small
frame derived from it (months, units), and described in one line for the report.

Each check returns (success, observed, details); `success` is GX's verdict (every GX
expectation of the check's suite succeeded), `observed` says what was found without row
content, `details` holds the numbers and the GX results (`gx`, `suite`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import polars as pl

from utfall.plan import Plan
from utfall.quality import gx_run
from utfall.quality.kinds import KindSpec

Verdict = tuple[bool, str, dict[str, Any]]
LISTED = 6  # months or units named in a one-line `observed`; details list them all


@dataclass(frozen=True)
class Subject:
    """Everything the checks of one source look at."""

    spec: KindSpec
    source: str
    staged: pl.DataFrame
    plan: Plan
    profile: pl.DataFrame  # month (Date), rows (Int64)
    history: pl.DataFrame | None
    delivered_rows: int | None

    @cached_property
    def staged_pandas(self) -> Any:
        """The data columns as pandas, converted once for the checks on the staged frame."""
        return gx_run.to_pandas(self.staged.select(self.spec.columns))

    def suite(self, check: str) -> str:
        return f"{self.spec.kind}.{check}"

    @property
    def rows_text(self) -> str:
        of = f" of {self.delivered_rows:,} delivered" if self.delivered_rows is not None else ""
        return f"{self.staged.height:,} rows passed validation{of}"


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:LISTED])
    return shown + (f" and {len(items) - LISTED} more" if len(items) > LISTED else "")


def _month_ranges(months: list[str]) -> list[str]:
    """["2025-03", "2025-04", "2025-05", "2025-09"] -> ["2025-03..2025-05", "2025-09"]."""

    def index(m: str) -> int:
        return int(m[:4]) * 12 + int(m[5:7])

    runs: list[list[str]] = []
    for m in sorted(months):
        if runs and index(m) == index(runs[-1][-1]) + 1:
            runs[-1].append(m)
        else:
            runs.append([m])
    return [r[0] if len(r) == 1 else f"{r[0]}..{r[-1]}" for r in runs]


def _rows(n: int) -> str:
    return f"{n:,} row" if n == 1 else f"{n:,} rows"


def _of(part: int, whole: int, noun: str) -> str:
    """ "3 of 48 months have", "1 of 48 months has"."""
    return f"{part} of {whole} {noun} {'has' if part == 1 else 'have'}"


def _change(x: float) -> str:
    return f"{x * 100:+.0f} %"


def _pct(x: float, digits: int = 1) -> str:
    return f"{x * 100:.{digits}f} %"


def _all_succeeded(results: list[dict[str, Any]]) -> bool:
    return all(r["success"] for r in results)


def _month_text(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("month").dt.strftime("%Y-%m"))


def _gx_details(subject: Subject, check: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"suite": subject.suite(check), "gx": results}


# --- volume ------------------------------------------------------------------------------


def _volume(
    subject: Subject,
    check: str,
    frame: pl.DataFrame,
    reference: str,
    limit: float,
    against: str,
    need_a_month: bool,
) -> Verdict:
    """Each month's relative change against `reference` within ±limit (GX on months).

    Months whose reference is 0 or missing cannot be compared and are listed as such; with
    `need_a_month`, having none left to compare is a failure (GX: at least one row).
    """
    import great_expectations.expectations as gxe

    comparable = pl.col(reference).fill_null(0) > 0
    compared = frame.filter(comparable).with_columns(
        ((pl.col("rows") / pl.col(reference)) - 1).round(9).alias("relative_change")
    )
    not_compared = frame.filter(~comparable)["month"].to_list()
    expectations = [
        gxe.ExpectColumnValuesToBeBetween(
            column="relative_change", min_value=-limit, max_value=limit
        )
    ]
    if need_a_month:
        expectations.append(gxe.ExpectTableRowCountToBeBetween(min_value=1))
    results = gx_run.validate(subject.suite(check), compared, expectations, index_column="month")
    outside = [(r["month"], r["relative_change"]) for r in gx_run.unexpected_rows(results[0])]
    details = {
        "max_relative_change": limit,
        "months_compared": compared.height,
        "months_outside": [{"month": m, "relative_change": c} for m, c in outside],
        "months_not_compared": not_compared,
        **_gx_details(subject, check, results),
    }
    success = _all_succeeded(results)
    if compared.height == 0:
        observed = f"no month to compare with {against}"
    elif success:
        observed = f"all {compared.height} months within ±{_pct(limit, 0)} of {against}"
    else:
        listed = _listed([f"{m} ({_change(c)})" for m, c in outside])
        observed = (
            f"{len(outside)} of {compared.height} months "
            f"{'differs' if len(outside) == 1 else 'differ'} by more than "
            f"±{_pct(limit, 0)} from {against}: {listed}"
        )
    return success, observed, details


def volume_vs_history(subject: Subject, settings: dict[str, Any]) -> Verdict:
    limit = float(settings["max_relative_change"])
    if subject.history is None:
        return True, "no earlier delivery", {"max_relative_change": limit, "months_compared": 0}
    history = subject.history.select("month", pl.col("rows").alias("history_rows"))
    frame = _month_text(subject.profile.join(history, on="month", how="inner").sort("month"))
    return _volume(
        subject,
        "volume_vs_history",
        frame,
        "history_rows",
        limit,
        "the previous delivery",
        need_a_month=False,  # e.g. deliveries that each hold only new months
    )


def volume_vs_baseline(subject: Subject, settings: dict[str, Any]) -> Verdict:
    """Measurement months against the mean of the same calendar month in the baseline."""
    limit = float(settings["max_relative_change"])
    b0, b1 = subject.plan.period("baseline")
    m0, m1 = subject.plan.period("measurement")
    profile = subject.profile.with_columns(pl.col("month").dt.month().alias("calendar_month"))
    baseline = (
        profile.filter(pl.col("month").is_between(b0, b1))
        .group_by("calendar_month")
        .agg(pl.col("rows").mean().alias("baseline_mean"))
    )
    frame = _month_text(
        profile.filter(pl.col("month").is_between(m0, m1))
        .join(baseline, on="calendar_month", how="left")
        .drop("calendar_month")
        .sort("month")
    )
    return _volume(
        subject,
        "volume_vs_baseline",
        frame,
        "baseline_mean",
        limit,
        "the same month's mean in the baseline years",
        need_a_month=True,  # a baseline without rows cannot vouch for the measurement
    )


# --- completeness -------------------------------------------------------------------------


def periods_present(subject: Subject, settings: dict[str, Any]) -> Verdict:
    import great_expectations.expectations as gxe

    frame = _month_text(subject.profile)
    results = gx_run.validate(
        subject.suite("periods_present"),
        frame,
        [gxe.ExpectColumnValuesToBeBetween(column="rows", min_value=1)],
        index_column="month",
    )
    empty = sorted(r["month"] for r in gx_run.unexpected_rows(results[0]))
    counted = subject.spec.counted
    first, last = frame["month"][0], frame["month"][-1]
    success = _all_succeeded(results)
    if success:
        observed = f"all {frame.height} months from {first} to {last} have {counted}"
    else:
        noun = "row" if counted == "rows" else "employee"
        ranges = _month_ranges(empty)
        observed = f"{_of(len(empty), frame.height, 'months')} no {noun}: {_listed(ranges)}"
    details = {
        "months": frame.height,
        "first_month": first,
        "last_month": last,
        "empty_months": empty,
        "counted": counted,
        **_gx_details(subject, "periods_present", results),
    }
    return success, observed, details


def units_present(subject: Subject, settings: dict[str, Any]) -> Verdict:
    """Every plan unit has at least one eligible employee in the roster."""
    import great_expectations.expectations as gxe

    from utfall.quality.roster import eligible

    plan = subject.plan
    groups = [(u, "treated") for u in plan.treated_units] + [
        (u, "comparison") for u in plan.comparison_units
    ]
    units = pl.DataFrame(
        {"unit_id": [u for u, _ in groups], "group": [g for _, g in groups]},
        schema={"unit_id": pl.String, "group": pl.String},
    )
    listed = subject.staged.group_by("unit_id").agg(pl.len().alias("roster_rows"))
    counted = eligible(subject.staged, plan).group_by("unit_id").agg(pl.len().alias("employees"))
    frame = (
        units.join(listed, on="unit_id", how="left", maintain_order="left")
        .join(counted, on="unit_id", how="left", maintain_order="left")
        .with_columns(pl.col("roster_rows", "employees").fill_null(0).cast(pl.Int64))
    )
    results = gx_run.validate(
        subject.suite("units_present"),
        frame,
        [gxe.ExpectColumnValuesToBeBetween(column="employees", min_value=1)],
        index_column="unit_id",
    )
    missing_ids = {r["unit_id"] for r in gx_run.unexpected_rows(results[0])}
    missing = frame.filter(pl.col("unit_id").is_in(sorted(missing_ids)))
    known = set(units["unit_id"])
    success = _all_succeeded(results)
    if success:
        observed = f"all {frame.height} plan units have eligible employees"
    else:
        named = [f"{u} ({g})" for u, g in missing.select("unit_id", "group").iter_rows()]
        observed = (
            f"{_of(missing.height, frame.height, 'plan units')} no eligible employee "
            f"in the roster: {_listed(named)}"
        )
    details = {
        "units": frame.height,
        "missing_units": missing.to_dicts(),
        "eligibility": {
            "min_employment_extent": plan.min_employment_extent,
            "employed_between": [
                str(plan.period("baseline")[0]),
                str(plan.period("measurement")[1]),
            ],
        },
        "roster_units_not_in_plan": sorted(
            u for u in subject.staged["unit_id"].drop_nulls().unique().to_list() if u not in known
        ),
        **_gx_details(subject, "units_present", results),
    }
    return success, observed, details


# --- staged values ------------------------------------------------------------------------


def _rows_expected() -> Any:
    import great_expectations.expectations as gxe

    return gxe.ExpectTableRowCountToBeBetween(min_value=1)


def null_share(subject: Subject, settings: dict[str, Any]) -> Verdict:
    import great_expectations.expectations as gxe

    max_share = float(settings["max_share"])
    judged = [c for c in subject.spec.columns if c not in subject.spec.meaningful_nulls]
    expectations = [_rows_expected()] + [
        gxe.ExpectColumnValuesToNotBeNull(column=c, mostly=1 - max_share) for c in judged
    ]
    results = gx_run.validate(subject.suite("null_share"), subject.staged_pandas, expectations)
    shares = {
        c: round(float(r["result"].get("unexpected_percent") or 0.0) / 100, 6)
        for c, r in zip(judged, results[1:], strict=True)
    }
    failing = [c for c, r in zip(judged, results[1:], strict=True) if not r["success"]]
    success = _all_succeeded(results)
    if subject.staged.height == 0:
        observed = f"no rows to judge ({subject.rows_text})"
    elif success:
        observed = f"no column above {_pct(max_share)} empty"
    else:
        empty = "; ".join(f"{c} {_pct(shares[c])} empty" for c in failing)
        observed = f"{empty} (max {_pct(max_share)})"
    details = {
        "max_share": max_share,
        "rows": subject.staged.height,
        "delivered_rows": subject.delivered_rows,
        "null_share": shares,
        "columns_above_max": failing,
        "not_judged": dict(subject.spec.meaningful_nulls),
        **_gx_details(subject, "null_share", results),
    }
    return success, observed, details


def value_ranges(subject: Subject, settings: dict[str, Any]) -> Verdict:
    rules = subject.spec.value_rules(subject.plan)
    results = gx_run.validate(
        subject.suite("value_ranges"),
        subject.staged_pandas,
        [_rows_expected()] + [expectation for _, _, expectation in rules],
    )
    broken = []
    for (column, rule, _), r in zip(rules, results[1:], strict=True):
        if not r["success"]:
            count = int(r["result"].get("unexpected_count") or 0)
            broken.append({"column": column, "rule": rule, "rows": count})
    success = _all_succeeded(results)
    if subject.staged.height == 0:
        observed = f"no rows to judge ({subject.rows_text})"
    elif success:
        observed = f"all values within their ranges ({len(rules)} rules)"
    else:
        observed = "; ".join(f"{b['column']}: {_rows(b['rows'])} {b['rule']}" for b in broken)
    details = {
        "rules": [{"column": c, "failing_rows_are": rule} for c, rule, _ in rules],
        "broken": broken,
        "rows": subject.staged.height,
        "delivered_rows": subject.delivered_rows,
        **_gx_details(subject, "value_ranges", results),
    }
    return success, observed, details


CHECKS: dict[str, Callable[[Subject, dict[str, Any]], Verdict]] = {
    "volume_vs_history": volume_vs_history,
    "volume_vs_baseline": volume_vs_baseline,
    "periods_present": periods_present,
    "units_present": units_present,
    "null_share": null_share,
    "value_ranges": value_ranges,
}
