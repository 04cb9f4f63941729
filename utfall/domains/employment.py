"""Employment status per person and month: entered work, work sustained 13 and 26 weeks,
earnings, and the rate card's outcome events.

Input (`validate`): one row per person and month

    person_id  Utf8   the person's pseudonym
    month      Date   the first day of the calendar month
    status     Utf8   a delivered label, mapped by LABELS to one of STATUSES
    earnings   optional; Decimal, integer or text ("12 345,50"), exact decimals, >= 0

Statuses (closed set): employed, unemployed, in_education_or_training, other. Delivered
labels are compared lower-cased with surrounding spaces removed; LABELS lists every accepted
spelling (Swedish and English). A label not listed is quarantined (`unknown_status`), never
guessed.

Quarantine rules (first that applies): ``missing_field`` (person_id, month or status empty),
``month_not_first_day``, ``unknown_status``, ``earnings_not_a_number``, ``negative_earnings``,
``earnings_more_than_two_decimals``, then ``conflicting_person_month`` (a person-month
delivered twice with different content: every copy) and ``duplicate_row`` (an exact copy:
the later copies).

Outcome definitions (`outcomes`), per enrolled person, enrolment date E, follow-up end F
(a month is "after enrolment" when it starts after E's month and on or before F):

* entered work: the first employed month after enrolment (`entered_work_month`);
* sustained 13 / 26 weeks: 3 / 6 consecutive employed months after enrolment (a month
  without a delivered row, or with another status, breaks the run). Month <-> week rule:
  13 weeks = 3 calendar months and 26 weeks = 6, and a month credits 91/3 days, so a run of
  k months lasts floor(91 k / 3) days (3 -> 91, 6 -> 182). The date achieved is the last day
  of the 3rd / 6th month of the first run that long;
* earnings over a window [start, end] of months: the exact sum of delivered earnings, with
  the number of months in the window that have no earnings delivered (`earnings_months_missing`).

Rate-card events (`events`, the frame utfall.payments.rate_card reads): per person at most one
row per event, ``entered_work`` (achieved_on = the first day of the entry month,
duration_days = the credited days of the run that starts there), ``sustained_13_weeks`` and
``sustained_26_weeks`` (achieved_on = the day the 3rd / 6th month ends, duration_days = the
credited days of the whole run, at least 91 / 182, observed up to F).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

import polars as pl

STATUSES = ("employed", "unemployed", "in_education_or_training", "other")
LABELS = {
    "employed": "employed",
    "in work": "employed",
    "in_work": "employed",
    "arbete": "employed",
    "i arbete": "employed",
    "anställd": "employed",
    "sysselsatt": "employed",
    "unemployed": "unemployed",
    "arbetslös": "unemployed",
    "öppet arbetslös": "unemployed",
    "arbetssökande": "unemployed",
    "in_education_or_training": "in_education_or_training",
    "in education or training": "in_education_or_training",
    "education": "in_education_or_training",
    "training": "in_education_or_training",
    "studier": "in_education_or_training",
    "studerande": "in_education_or_training",
    "utbildning": "in_education_or_training",
    "other": "other",
    "övrigt": "other",
    "annat": "other",
    "sjukskriven": "other",
    "föräldraledig": "other",
}
MONEY = pl.Decimal(18, 2)
VALID_SCHEMA = {"person_id": pl.Utf8, "month": pl.Date, "status": pl.Utf8, "earnings": MONEY}
SUSTAINED = {"sustained_13_weeks": 3, "sustained_26_weeks": 6}


def credited_days(months: int) -> int:
    """Days a run of consecutive employed months counts for: floor(91 x months / 3)."""
    return 91 * months // 3


def _month_end(month: dt.date) -> dt.date:
    nxt = dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return nxt - dt.timedelta(days=1)


def _next_month(month: dt.date) -> dt.date:
    return _month_end(month) + dt.timedelta(days=1)


def _earnings(value: object) -> tuple[Decimal | None, str | None]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    if isinstance(value, float):
        raise TypeError("earnings must be exact (Decimal, int or text), not float")
    text = str(value).strip().replace("\u00a0", "").replace(" ", "").replace(",", ".")
    try:
        d = Decimal(text)
    except InvalidOperation:
        return None, "earnings_not_a_number"
    if not d.is_finite():
        return None, "earnings_not_a_number"
    if d < 0:
        return None, "negative_earnings"
    if d != d.quantize(Decimal("0.01")):
        return None, "earnings_more_than_two_decimals"
    return d.quantize(Decimal("0.01")), None


def validate(rows: pl.DataFrame, *, with_index: bool = False) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(valid, quarantined): valid rows (VALID_SCHEMA, status mapped, sorted by person and
    month) and the failing input rows with `rule` and `detail` (with ``with_index``, also
    `_n`, the 0-based input row, so a pipeline can trace each back to its file and line)."""
    for c in ("person_id", "month", "status"):
        if c not in rows.columns:
            raise ValueError(f"employment rows: column {c!r} missing")
    if rows.schema["month"] != pl.Date:
        raise ValueError(f"employment rows: month is {rows.schema['month']}, expected Date")
    frame = rows if "earnings" in rows.columns else rows.with_columns(earnings=pl.lit(None))
    good, bad = [], []

    def raw(row: dict) -> dict:
        return {**row, "earnings": None if row["earnings"] is None else str(row["earnings"])}

    for n, row in enumerate(frame.select("person_id", "month", "status", "earnings").to_dicts()):
        rule, detail, earnings = None, None, None
        person_id, month, status = row["person_id"], row["month"], row["status"]
        # (the common case first: all three present, without the list of empty fields)
        if not (person_id and month and status and str(person_id).strip() and status.strip()):
            empty = [c for c in ("person_id", "month", "status") if not str(row[c] or "").strip()]
        else:
            empty = None
        if empty:
            rule, detail = "missing_field", ", ".join(empty)
        elif month.day != 1:
            rule, detail = "month_not_first_day", month.isoformat()
        elif status.strip().lower() not in LABELS:
            rule, detail = "unknown_status", status
        else:
            earnings, rule = _earnings(row["earnings"])
            detail = None if rule is None else str(row["earnings"])
        if rule is not None:
            bad.append({**raw(row), "rule": rule, "detail": detail, "_n": n})
            continue
        # (person_id, month, mapped status, earnings, the row as delivered, its index)
        good.append((person_id, month, LABELS[status.strip().lower()], earnings, row, n))
    groups: dict[tuple, list[tuple]] = {}
    for g in good:
        groups.setdefault((g[0], g[1]), []).append(g)
    keep = []
    for copies in groups.values():
        contents = {(c[2], c[3]) for c in copies}
        if len(contents) > 1:
            for c in copies:
                bad.append(
                    {**raw(c[4]), "rule": "conflicting_person_month", "detail": None, "_n": c[5]}
                )
            continue
        keep.append(copies[0][:4])
        for c in copies[1:]:
            bad.append({**raw(c[4]), "rule": "duplicate_row", "detail": None, "_n": c[5]})
    valid = pl.DataFrame(keep, schema=VALID_SCHEMA, orient="row").sort("person_id", "month")
    quarantine_schema = {
        "person_id": pl.Utf8,
        "month": pl.Date,
        "status": pl.Utf8,
        "earnings": pl.Utf8,
        "rule": pl.Utf8,
        "detail": pl.Utf8,
    }
    bad.sort(key=lambda b: b["_n"])
    if with_index:
        quarantine_schema["_n"] = pl.Int64
    quarantined = pl.DataFrame(
        [{k: v for k, v in b.items() if k != "_n" or with_index} for b in bad],
        schema=quarantine_schema,
    )
    return valid, quarantined


def _runs(months: list[dt.date]) -> list[tuple[dt.date, int]]:
    """Runs of consecutive months (sorted input): (first month, length)."""
    runs: list[tuple[dt.date, int]] = []
    for m in months:
        if runs and _month_after(runs[-1][0], runs[-1][1]) == m:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((m, 1))
    return runs


def _month_index(day: dt.date) -> int:
    """Months since year 0: consecutive months differ by one."""
    return day.year * 12 + day.month - 1


def _month_after(first: dt.date, k: int) -> dt.date:
    total = first.year * 12 + first.month - 1 + k
    return dt.date(total // 12, total % 12 + 1, 1)


def outcomes(
    status: pl.DataFrame,
    enrolment: pl.DataFrame,
    follow_up_end: dt.date,
    earnings_window: tuple[dt.date, dt.date] | None = None,
) -> pl.DataFrame:
    """One row per enrolled person (enrolment: person_id, enrolled_on): entered_work (Int8),
    entered_work_month, sustained_13_weeks / sustained_26_weeks (Int8) with their dates
    (`*_on`), months_observed (months after enrolment with a row), earnings_total (exact,
    over `earnings_window`'s months, default the months after enrolment) and
    earnings_months_missing. Persons with no status row get 0s and months_observed 0."""
    by_person: dict[str, list[dict]] = {}
    for r in status.sort("person_id", "month").to_dicts():
        by_person.setdefault(r["person_id"], []).append(r)
    out = []
    for e in enrolment.select("person_id", "enrolled_on").sort("person_id").to_dicts():
        first = _next_month(e["enrolled_on"].replace(day=1))
        history = by_person.get(e["person_id"], [])
        rows = [r for r in history if first <= r["month"] <= follow_up_end]
        employed = [r["month"] for r in rows if r["status"] == "employed"]
        runs = _runs(employed)
        rec = {
            "person_id": e["person_id"],
            "enrolled_on": e["enrolled_on"],
            "entered_work": int(bool(employed)),
            "entered_work_month": employed[0] if employed else None,
            "entered_work_days": credited_days(runs[0][1]) if runs else None,
        }
        for name, k in SUSTAINED.items():
            run = next((r for r in runs if r[1] >= k), None)
            rec[name] = int(run is not None)
            rec[f"{name}_on"] = _month_end(_month_after(run[0], k - 1)) if run else None
            rec[f"{name}_days"] = credited_days(run[1]) if run else None
        start, end = earnings_window or (first, follow_up_end)
        window = [r for r in history if start <= r["month"] <= end]
        months = max(0, _month_index(end) - _month_index(start) + 1)  # month starts <= end
        known = [r["earnings"] for r in window if r["earnings"] is not None]
        rec["months_observed"] = len(rows)
        rec["earnings_total"] = sum(known, Decimal("0.00"))
        rec["earnings_months_missing"] = months - len(known)
        out.append(rec)
    schema = {
        "person_id": pl.Utf8,
        "enrolled_on": pl.Date,
        "entered_work": pl.Int8,
        "entered_work_month": pl.Date,
        "entered_work_days": pl.Int64,
    }
    for name in SUSTAINED:
        schema |= {name: pl.Int8, f"{name}_on": pl.Date, f"{name}_days": pl.Int64}
    schema |= {
        "months_observed": pl.Int64,
        "earnings_total": MONEY,
        "earnings_months_missing": pl.Int64,
    }
    return pl.DataFrame(out, schema=schema)


def events(per_person: pl.DataFrame) -> pl.DataFrame:
    """The rate card's events frame (person_id, event, achieved_on, duration_days) from
    `outcomes`: one row per person and event achieved, sorted by date, person, event."""
    parts = [
        per_person.filter(pl.col("entered_work") == 1).select(
            "person_id",
            event=pl.lit("entered_work"),
            achieved_on="entered_work_month",
            duration_days="entered_work_days",
        )
    ]
    for name in SUSTAINED:
        parts.append(
            per_person.filter(pl.col(name) == 1).select(
                "person_id",
                event=pl.lit(name),
                achieved_on=f"{name}_on",
                duration_days=f"{name}_days",
            )
        )
    return pl.concat(parts).sort("achieved_on", "person_id", "event")
