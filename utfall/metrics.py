"""Outcome metrics per unit and quarter: the outcome panel every estimator reads.

Definitions (what a validator checks):

* Employment history. The roster holds one row per employment period of a person (unit,
  extent, employed_from..employed_to inclusive, empty = still employed); a person may have
  several (a transfer, a change of extent, re-employment). A person's valid rows never
  overlap (validation quarantines `overlapping_employment`), so on each day a person is
  employed in at most one unit at one extent. A row counts if its unit is in the plan's
  cohort and its extent is at least the plan's minimum (eligible).
* Exposure, per unit and quarter, from the eligible rows: `employees` = distinct persons
  with any row in the unit employed on some day of the quarter; `headcount` = employed days
  / days in the quarter (average number of employees, person-time); `scheduled_days` =
  employed days x the row's extent (FTE-days, the base of SKR's sick-leave rate; hours per
  day cancel). A change of extent changes scheduled days, not headcount.
* Unit of a sick day. Each sick day belongs to the unit of the person's eligible row that
  covers that day, weighted by that row's extent where extent matters. Days no eligible
  row covers (between jobs, in a unit outside the cohort, below the minimum extent) count
  nowhere; they still are days of the sick period below.
* Sick periods (`period_rule: statutory`, the default). The sick-pay period of the Swedish
  sick-pay law (sjuklönelagen, 1991:1047) is the first 14 calendar days of sickness; a
  change of extent does not start a new period, and falling ill again within five
  calendar days after a period ended continues it (återinsjuknande). So a person's valid
  spells, ordered by start, are joined: a spell starts a new sick period when it begins
  more than `reillness_days` (default 5) sick-free calendar days after the latest end of
  the person's earlier spells, i.e. when start > previous end + reillness_days + 1; else it
  continues that period (a spell starting the day after, as when the extent changes, always
  does). The window runs from the last sick day of the period, also when the period has
  passed its day 14: falling ill again within it continues the same sickness (paid on as
  sickness benefit), it does not start new days 1-14. Periods are the person's, whatever
  unit or employment row their days fall in.
* Day numbering. The days of a sick period are its calendar days of sickness, numbered
  1, 2, ... in date order across its spells; the sick-free days between spells are not
  period days and get no number. A day at partial extent (say 50 %) is one period day.
  Example: sick days 1-10, three days well, eight days sick again: the second spell holds
  period days 11-18, of which 11-14 (its first four days) are short-term. Days before the
  baseline start (a period begun before it) are numbered too: they use up days 1-14 but
  fall in no quarter of the panel.
* short_term_sick_days_per_employee. The sick days numbered 1..`max_spell_day` (default
  14) of every sick period, each weighted by the extent of the spell it falls in (50 % sick
  for a day = 0.5 day), summed per unit (of the day) and quarter (of the day) and divided
  by headcount. With `period_rule: per_spell` every delivered spell is a period of its own
  (the count before issue 6: days 1..max_spell_day of each spell row).
* sick_leave_rate (SKR). Sick hours / scheduled hours = sum of (sick days, every day of
  every spell, in the quarter and in an eligible employment row x spell extent x that
  row's extent) / (days in the row x the row's extent). With `day_basis: working_days`
  (the default, SKR's key figure) only working days count, on both sides: Monday to
  Friday except Swedish public holidays and Midsummer, Christmas and New Year's Eve
  (`workday_calendar`); hours per day cancel. `calendar_days` counts every day. It does
  not depend on sick periods.

Units of the cohort with no eligible employee in a quarter have no row for it.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl

from utfall import warehouse
from utfall.plan import Plan
from utfall.warehouse.runs import Run

#: The metrics computed from the roster and the sick-leave spells (`outcome_panel`).
SICK_LEAVE_METRICS = ("short_term_sick_days_per_employee", "sick_leave_rate")

PANEL_SCHEMA = {
    "outcome": pl.String,
    "unit_id": pl.String,
    "group": pl.String,
    "period_start": pl.Date,
    "period_end": pl.Date,
    "phase": pl.String,
    "employees": pl.Int64,
    "numerator": pl.Float64,
    "denominator": pl.Float64,
    "value": pl.Float64,
}


def quarters(plan: Plan) -> pl.DataFrame:
    """Quarters from the baseline start to the measurement end, each with its phase."""
    b0, b1 = plan.period("baseline")
    m0, m1 = plan.period("measurement")
    rows = []
    start = b0
    while start <= m1:
        nxt = dt.date(start.year + (start.month + 2) // 12, (start.month + 2) % 12 + 1, 1)
        end = nxt - dt.timedelta(days=1)
        phase = "baseline" if b0 <= start <= b1 else "measurement" if m0 <= start <= m1 else "gap"
        if phase != "gap":
            rows.append({"period_start": start, "period_end": end, "phase": phase})
        start = nxt
    return pl.DataFrame(
        rows, schema={"period_start": pl.Date, "period_end": pl.Date, "phase": pl.String}
    )


def workday_calendar(plan: Plan) -> pl.DataFrame:
    """`day` and `cum`, the number of scheduled working days up to and including `day`,
    from the day before the baseline starts to a year after the measurement ends.

    Working days are Monday to Friday except Swedish public holidays and the de-facto
    holidays Midsummer, Christmas and New Year's Eve (the `holidays` library, categories
    public and de_facto): the schedule of a full-time office week. It approximates the
    scheduled hours of SKR's sick-leave rate, whose exact base is each employee's own
    schedule (shift and weekend work in care are not delivered).
    """
    import holidays

    b0, _ = plan.period("baseline")
    _, m1 = plan.period("measurement")
    first, last = b0 - dt.timedelta(days=1), m1 + dt.timedelta(days=366)
    off = holidays.Sweden(
        years=range(first.year, last.year + 1),
        include_sundays=False,
        categories=("public", "de_facto"),
    )
    days = pl.date_range(first, last, "1d", eager=True)
    work = days.dt.weekday().le(5) & ~days.is_in(list(off.keys()))
    return pl.DataFrame({"day": days, "cum": work.cast(pl.Int64).cum_sum()})


def cohort_units(plan: Plan) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "unit_id": plan.treated_units + plan.comparison_units,
            "group": ["treated"] * len(plan.treated_units)
            + ["comparison"] * len(plan.comparison_units),
        }
    )


_PANEL_SQL = """
-- Sums are of integers (days x percent), so they are exact and the panel is bit-for-bit
-- reproducible whatever order DuckDB's parallel aggregation adds them in.
WITH emp AS (
    -- Employment history: one row per employment period; a person's valid rows never
    -- overlap (validation quarantines overlapping_employment), so each day of a person
    -- lies in at most one row, and every person-day is counted once.
    SELECT r.person_id, r.unit_id, u."group", r.employment_extent AS emp_pct,
           r.employed_from, coalesce(r.employed_to, DATE '9999-12-31') AS employed_to
    FROM (SELECT * FROM work.staging_employee_roster WHERE contract_id = $contract_id
          AND run_id = $run_id AND source = $roster) r JOIN _units u USING (unit_id)
    WHERE r.employment_extent >= $min_extent
),
exposure AS (
    SELECT e.unit_id, e."group", p.period_start, p.period_end, p.phase,
           count(DISTINCT e.person_id) AS employees,
           sum(date_diff('day', greatest(e.employed_from, p.period_start),
                         least(e.employed_to, p.period_end)) + 1)::HUGEINT AS employed_days,
           sum((date_diff('day', greatest(e.employed_from, p.period_start),
                           least(e.employed_to, p.period_end)) + 1) * e.emp_pct)::HUGEINT
               AS scheduled_day_pct,
           -- Working days in [a, b] = cum(b) - cum(a - 1), from the calendar.
           sum((cb.cum - ca.cum) * e.emp_pct)::HUGEINT AS scheduled_wd_pct,
           date_diff('day', p.period_start, p.period_end) + 1 AS period_days
    FROM emp e JOIN _periods p
      ON e.employed_from <= p.period_end AND e.employed_to >= p.period_start
    JOIN _workdays ca ON ca.day = greatest(e.employed_from, p.period_start) - 1
    JOIN _workdays cb ON cb.day = least(e.employed_to, p.period_end)
    GROUP BY ALL
),
spells AS (
    -- Per person, in order of start: prev_end = the latest end among the earlier spells
    -- (a person's valid spells never overlap, so it is the previous spell's end), and
    -- sick_before = the sick days of the earlier spells. One window, one sort.
    SELECT person_id, spell_start, spell_end, extent,
           max(spell_end) OVER earlier AS prev_end,
           coalesce(sum(date_diff('day', spell_start, spell_end) + 1) OVER earlier, 0)::BIGINT
               AS sick_before
    FROM work.staging_sick_leave_spells WHERE contract_id = $contract_id
          AND run_id = $run_id AND source = $spells
    WINDOW earlier AS (PARTITION BY person_id ORDER BY spell_start, spell_end
                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
),
ranked AS (
    -- A spell starts a new sick period unless it begins at most $reillness sick-free
    -- calendar days after prev_end (0: the day after, as when the extent changes); under
    -- per_spell every spell starts one. The period's days are its sick days numbered in
    -- order (the sick-free days between its spells get no number): sick_before at the
    -- period's first spell (the running max over new-period rows, as sick_before never
    -- decreases) is day 0, so this spell's first day is day sick_before - that + 1, and its
    -- days up to day $max_day are short-term (short_end < spell_start: none are).
    SELECT person_id, spell_start, spell_end, extent,
           spell_start + ($max_day - 1 - sick_before
               + max(CASE WHEN $per_spell OR prev_end IS NULL
                               OR spell_start > prev_end + ($reillness + 1)::INTEGER
                          THEN sick_before END)
                     OVER (PARTITION BY person_id ORDER BY spell_start, spell_end
                           ROWS UNBOUNDED PRECEDING))::INTEGER AS short_end
    FROM spells
),
spell_days AS (
    -- Each sick day belongs to the unit of the employment row covering it (join by person
    -- and clip to the row); days no eligible row covers count nowhere.
    SELECT e.unit_id, p.period_start,
           sum(greatest(0, date_diff('day',
                   greatest(s.spell_start, e.employed_from, p.period_start),
                   least(s.short_end, s.spell_end, e.employed_to, p.period_end)) + 1)
               * s.extent)::HUGEINT AS short_day_pct,
           sum(greatest(0, date_diff('day',
                   greatest(s.spell_start, e.employed_from, p.period_start),
                   least(s.spell_end, e.employed_to, p.period_end)) + 1)
               * s.extent * e.emp_pct)::HUGEINT AS sick_day_pct2,
           -- The same on working days only: cum(b) - cum(a - 1), 0 when a > b.
           sum(greatest(0, coalesce(cb.cum - ca.cum, 0)) * s.extent * e.emp_pct)::HUGEINT
               AS sick_wd_pct2
    FROM ranked s
    JOIN emp e ON s.person_id = e.person_id
              AND s.spell_start <= e.employed_to AND s.spell_end >= e.employed_from
    JOIN _periods p ON s.spell_start <= p.period_end AND s.spell_end >= p.period_start
    LEFT JOIN _workdays ca
      ON ca.day = greatest(s.spell_start, e.employed_from, p.period_start) - 1
    LEFT JOIN _workdays cb ON cb.day = least(s.spell_end, e.employed_to, p.period_end)
    GROUP BY ALL
)
SELECT x.unit_id, x."group", x.period_start, x.period_end, x.phase, x.employees,
       x.employed_days::DOUBLE / x.period_days AS headcount,
       x.scheduled_day_pct::DOUBLE / 100 AS scheduled_days,
       coalesce(d.short_day_pct, 0)::DOUBLE / 100 AS short_days,
       coalesce(d.sick_day_pct2, 0)::DOUBLE / 10000 AS sick_scheduled_days,
       x.scheduled_wd_pct::DOUBLE / 100 AS scheduled_workdays,
       coalesce(d.sick_wd_pct2, 0)::DOUBLE / 10000 AS sick_scheduled_workdays
FROM exposure x LEFT JOIN spell_days d USING (unit_id, period_start)
ORDER BY x.unit_id, x.period_start
"""


def outcome_panel(con: duckdb.DuckDBPyConnection, plan: Plan, run: Run) -> pl.DataFrame:
    """The unit x quarter panel for every outcome of the plan (see module docstring)."""
    roster = plan.roster_source
    frames = []
    con.register("_periods", quarters(plan).to_arrow())
    con.register("_units", cohort_units(plan).to_arrow())
    con.register("_workdays", workday_calendar(plan).to_arrow())
    try:
        # Outcomes sharing a source and sick-period parameters share a scan.
        bases: dict[tuple[str, int, str, int], pl.DataFrame] = {}
        for outcome in plan.outcomes:
            if outcome["metric"] not in SICK_LEAVE_METRICS:
                continue
            params = plan.outcome_parameters(outcome["id"])
            if "max_spell_day" in params:
                key = (
                    outcome["source"],
                    int(params["max_spell_day"]),
                    str(params["period_rule"]),
                    int(params["reillness_days"]),
                )
            else:  # the rate does not depend on them: share any scan of its source
                key = next(
                    (k for k in bases if k[0] == outcome["source"]),
                    (outcome["source"], 14, "per_spell", 0),
                )
            if key not in bases:
                bases[key] = warehouse.read_table(
                    con,
                    _PANEL_SQL,
                    {
                        "min_extent": plan.min_employment_extent,
                        "max_day": key[1],
                        "per_spell": key[2] == "per_spell",
                        "reillness": key[3],
                        "roster": roster,
                        "spells": key[0],
                        **run.scope,
                    },
                )
            base = bases[key]
            if outcome["metric"] == "short_term_sick_days_per_employee":
                num, den = pl.col("short_days"), pl.col("headcount")
            elif params["day_basis"] == "working_days":  # sick_leave_rate, as SKR
                num, den = pl.col("sick_scheduled_workdays"), pl.col("scheduled_workdays")
            else:  # sick_leave_rate on calendar days
                num, den = pl.col("sick_scheduled_days"), pl.col("scheduled_days")
            frames.append(
                base.select(
                    pl.lit(outcome["id"]).alias("outcome"),
                    "unit_id",
                    "group",
                    "period_start",
                    "period_end",
                    "phase",
                    "employees",
                    num.alias("numerator"),
                    den.alias("denominator"),
                    (num / den).alias("value"),
                ).cast(PANEL_SCHEMA)  # type: ignore[arg-type]
            )
    finally:
        con.unregister("_periods")
        con.unregister("_units")
        con.unregister("_workdays")
    return pl.concat(frames) if frames else pl.DataFrame(schema=PANEL_SCHEMA)


#: Metrics computed from a delivered unit panel rather than from the roster and spells.
PANEL_METRICS = ("panel_value",)


def panel_value(con: duckdb.DuckDBPyConnection, plan: Plan, run: Run) -> pl.DataFrame:
    """The plan's `panel_value` outcomes, one row per unit and period of their unit_panel
    source: value = the delivered outcome; weight w = the delivered weight, or 1 when the
    plan maps none; numerator = value x w, denominator = w (so the estimators' rate
    numerator / denominator is the value, and w the unit-period's weight). `employees` is
    null: a delivered panel holds aggregates, not persons. `treatment_start` is the
    delivered start, or with a treated flag the measurement start for treated units. Periods
    after the measurement end (a payment period's `through`) are left out."""
    from utfall.validate import staged_generic

    measurement_start, measurement_end = plan.period("measurement")
    frames = []
    for outcome in plan.outcomes:
        if outcome["metric"] not in PANEL_METRICS:
            continue
        column = plan.outcome_parameters(outcome["id"])["column"]
        # Validation keeps periods inside the plan's; a payment period's run measures only
        # those up to its `through` (utfall.payments.periods.measured_plan).
        staged = staged_generic(con, plan, run, outcome["source"]).filter(
            pl.col("period").cast(pl.Date) <= measurement_end
        )
        weight = pl.col("weight").fill_null(1.0)
        start = pl.col("treatment_start")
        if "treated" in plan.source(outcome["source"])["columns"]:
            start = pl.when(pl.col("group") == "treated").then(pl.lit(measurement_start))
        frames.append(
            staged.sort("unit_id", "period").select(
                pl.lit(outcome["id"]).alias("outcome"),
                "unit_id",
                "group",
                pl.col("period").alias("period_start"),
                pl.col("period").alias("period_end"),
                "phase",
                pl.lit(None, dtype=pl.Int64).alias("employees"),
                (pl.col(column) * weight).alias("numerator"),
                weight.alias("denominator"),
                pl.col(column).alias("value"),
                start.cast(pl.Date).alias("treatment_start"),
            )
        )
    return pl.concat(frames) if frames else pl.DataFrame(schema=FULL_PANEL_SCHEMA)


#: The stored panel: PANEL_SCHEMA and each row's treatment start (null: never treated).
FULL_PANEL_SCHEMA = {**PANEL_SCHEMA, "treatment_start": pl.Date}


def full_outcome_panel(con: duckdb.DuckDBPyConnection, plan: Plan, run: Run) -> pl.DataFrame:
    """The run's panel of every outcome measured per unit and period: the sick-leave
    metrics from roster and spells, `panel_value` from a delivered unit panel."""
    frames = []
    if any(o["metric"] in SICK_LEAVE_METRICS for o in plan.outcomes):
        sick = outcome_panel(con, plan, run)
        start = plan.period("measurement")[0]
        frames.append(
            sick.with_columns(
                pl.when(pl.col("group") == "treated")
                .then(pl.lit(start))
                .otherwise(None)
                .cast(pl.Date)
                .alias("treatment_start")
            )
        )
    frames.append(panel_value(con, plan, run))
    return pl.concat([f.cast(FULL_PANEL_SCHEMA) for f in frames])  # type: ignore[arg-type]


def build_outcome_panel(con: duckdb.DuckDBPyConnection, plan: Plan, run: Run) -> pl.DataFrame:
    """Compute the run's panel (`full_outcome_panel`) and store it (published as
    `marts.outcomes_by_unit`)."""
    panel = full_outcome_panel(con, plan, run)
    with warehouse.transaction(con):
        warehouse.insert_rows(con, "work.outcome_panel", panel, run.scope)
    return panel


def group_series(panel: pl.DataFrame, outcome: str) -> pl.DataFrame:
    """Per group and quarter: pooled value (sum numerator / sum denominator) and employees."""
    return (
        panel.filter(pl.col("outcome") == outcome)
        .group_by("group", "period_start", "phase")
        .agg(
            pl.col("employees").sum(),
            pl.col("numerator").sum(),
            pl.col("denominator").sum(),
        )
        .with_columns(value=pl.col("numerator") / pl.col("denominator"))
        .sort("group", "period_start")
    )
