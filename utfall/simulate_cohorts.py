"""Seeded simulators of the person-level contracts, with KNOWN truth: a health bond cohort
(HbA1c), an employment cohort (monthly status, earnings, public costs) and an IOP partnership's
indicator series with a historical baseline.

Truth is the sample average effect on the treated (ATT) computed by the project's own
outcome definitions (utfall.domains) on both potential worlds: every random draw is shared by
the world with and the world without the programme ("common random numbers"), the programme
changes only what its effect parameter says, and the outcome functions are run on each world's
rows. So the truth is exactly what a perfect counterfactual would give for these persons, and
it follows any change to an outcome definition.

Selection on observables (the reason a naive comparison is wrong): who takes part depends on
the covariates the simulator returns (a logit, written in each simulator's docstring), and the
outcomes depend on the same covariates; given them, taking part is independent of the
potential outcomes. Each component draws from its own ``default_rng(SeedSequence([seed, k]))``,
so the output is identical between calls with the same arguments.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import polars as pl

from utfall.domains import diabetes, employment, hba1c, public_costs

__all__ = [
    "EMPLOYMENT_OUTCOMES",
    "FOLLOW_UP_END",
    "Cohort",
    "employment_cohort",
    "health_cohort",
    "iop_followup",
    "person_costs",
]

CLINICS = ("vc_a", "vc_b", "vc_c", "vc_d", "vc_e")
OFFICES = ("af_1", "af_2", "af_3", "af_4")


@dataclass(frozen=True)
class Cohort:
    """Simulated deliveries (`frames`, as a provider would deliver them), the participant
    rows, and the truth: ``truth["att"][outcome]`` and the specification."""

    participants: pl.DataFrame
    frames: dict[str, pl.DataFrame]
    truth: dict[str, Any] = field(default_factory=dict)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _days(start: dt.date, offsets: np.ndarray) -> list[dt.date]:
    return [start + dt.timedelta(days=int(o)) for o in offsets]


def _att(world1: pl.DataFrame, world0: pl.DataFrame, treated: set[str], names) -> dict:
    both = world1.join(world0, on="person_id", suffix="_0").filter(
        pl.col("person_id").is_in(sorted(treated))
    )
    out = {}
    for o in names:
        diff = both.select(pl.col(o).cast(pl.Float64) - pl.col(f"{o}_0").cast(pl.Float64))
        out[o] = float(diff.drop_nulls().to_series().mean())
    return out


def health_cohort(
    seed: int = 0,
    population: int = 4000,
    effect_12m: float = -3.0,
    effect_24m: float = -2.0,
    missing_12m: float = 0.08,
    missing_24m: float = 0.12,
    ineligible: float = 0.0,
    other_analytes: bool = False,
) -> Cohort:
    """A health bond in the style of Region Stockholm's: primary-care patients aged 50-60
    with HbA1c 42-47 mmol/mol at baseline, of whom some take part (treated) and the rest form
    the comparison pool (not offered the programme).

    Persons: age uniform integer 50..60, sex F w.p. 0.55, clinic uniform over CLINICS,
    baseline HbA1c uniform integer 42..47, index (enrolment) date uniform over 2023.
    Participation: logit P = -1.3 + 0.55 (baseline - 44.5) - 0.12 (age - 55) + 0.5 [F]
    + clinic shift (-0.6, -0.3, 0, 0.3, 0.6): participants have higher baselines, are younger,
    more often women. Latent HbA1c at m months without the programme:
    44.5 + 0.6 (baseline - 44.5) + 0.08 (age - 55) + 0.6 [M] + clinic level (-1, -0.5, 0, 0.5,
    1) + drift (0 at 12 m, +0.8 at 24 m) + person level N(0, 1.5) + noise N(0, 1.8); with it
    the same + effect_{m}m. Reported values are rounded to whole mmol/mol. Baseline sample on
    the index date; follow-ups at the anniversary +- U(-45, 45) days, missing with the given
    probabilities (at random, the same in both worlds). 5 % of persons also have a 2009 value
    in Mono-S % (unit "%"), which must be converted as Mono-S (it is outside every window).
    Participants exit at 12 months ("completed") or, 15 %, earlier ("dropped_out"); outcomes are
    intention to treat (measured whatever the exit).

    frames["lab_results"]: person_id, sample_date, analyte, value (Utf8, decimal comma for %),
    unit. truth["att"] over the outcomes of utfall.domains.diabetes.OUTCOMES.

    With ``ineligible`` > 0, that share of persons (drawn from a stream of its own, so the
    other draws do not change) lies outside the bond's eligibility, in either arm: half by
    age (45-49 or 61-65), half by baseline HbA1c (40-41 or 48-49). The plan's eligibility
    must exclude them; truth["att"] is then over the eligible participants only
    (truth["n_ineligible"] counts the others).

    With ``other_analytes``, every person also has, on the index date (a stream of its own,
    the same in both worlds, no outcome reads them): fasting glucose N(5.9, 0.5) mmol/L, for
    one in ten delivered in mg/dL (x 18.016, whole mg/dL), and for half of the persons weight
    N(84, 14) kg and BMI N(28.5, 4) kg/m2 (one decimal).
    """
    r = _rng(seed, 1)
    n = population
    ids = np.array([f"h{i:05d}" for i in range(n)])
    age = r.integers(50, 61, n)
    female = r.random(n) < 0.55
    clinic = r.integers(0, len(CLINICS), n)
    base = r.integers(42, 48, n).astype(float)
    enrolled = _days(dt.date(2023, 1, 1), r.integers(0, 365, n))
    if ineligible > 0:
        q = _rng(seed, 6)
        out, by_age, low = (q.random(n) < ineligible), (q.random(n) < 0.5), (q.random(n) < 0.5)
        age = np.where(
            out & by_age, np.where(low, q.integers(45, 50, n), q.integers(61, 66, n)), age
        )
        base = np.where(
            out & ~by_age, np.where(low, q.integers(40, 42, n), q.integers(48, 50, n)), base
        ).astype(float)
    eligible = (age >= 50) & (age <= 60) & (base >= 42) & (base <= 47)
    shift = np.array([-0.6, -0.3, 0.0, 0.3, 0.6])[clinic]
    logit = -1.3 + 0.55 * (base - 44.5) - 0.12 * (age - 55) + 0.5 * female + shift
    treated = _rng(seed, 2).random(n) < _expit(logit)
    r = _rng(seed, 3)
    level = r.normal(0, 1.5, n)
    clinic_level = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])[clinic]
    mean = 44.5 + 0.6 * (base - 44.5) + 0.08 * (age - 55) + 0.6 * ~female + clinic_level + level
    noise = {m: r.normal(0, 1.8, n) for m in diabetes.MONTHS}
    jitter = {m: r.integers(-45, 46, n) for m in diabetes.MONTHS}
    present = {12: r.random(n) >= missing_12m, 24: r.random(n) >= missing_24m}
    drift = {12: 0.0, 24: 0.8}
    effect = {12: effect_12m, 24: effect_24m}
    old = r.random(n) < 0.05
    old_value = np.round((mean + 8.9) / 10.11 - 0.3, 1)  # Mono-S %, a year before
    exit_early = _rng(seed, 4).random(n) < 0.15
    exit_days = _rng(seed, 5).integers(30, 330, n)

    a = _rng(seed, 7)
    glucose, mg_dl = a.normal(5.9, 0.5, n), a.random(n) < 0.1
    weighed, weight, bmi = a.random(n) < 0.5, a.normal(84, 14, n), a.normal(28.5, 4, n)

    def labs(world: int) -> pl.DataFrame:
        rows = {"person_id": [], "sample_date": [], "analyte": [], "value": [], "unit": []}

        def add(i, day, value, unit, analyte="HbA1c"):
            rows["person_id"].append(ids[i])
            rows["sample_date"].append(day)
            rows["analyte"].append(analyte)
            rows["value"].append(value)
            rows["unit"].append(unit)

        for i in range(n):
            if other_analytes:
                if mg_dl[i]:
                    add(i, enrolled[i], f"{glucose[i] * 18.016:.0f}", "mg/dL", "fasting glucose")
                else:
                    add(i, enrolled[i], f"{glucose[i]:.1f}", "mmol/L", "fasting glucose")
                if weighed[i]:
                    add(i, enrolled[i], f"{weight[i]:.1f}", "kg", "weight")
                    add(i, enrolled[i], f"{bmi[i]:.1f}", "kg/m2", "BMI")
            if old[i]:
                add(i, dt.date(2009, 3, 1), f"{old_value[i]:.1f}".replace(".", ","), "%")
            add(i, enrolled[i], f"{base[i]:.0f}", "mmol/mol")
            for m in diabetes.MONTHS:
                if present[m][i]:
                    v = mean[i] + drift[m] + noise[m][i] + (effect[m] if world else 0.0)
                    day = diabetes.anniversary(enrolled[i], m) + dt.timedelta(int(jitter[m][i]))
                    add(i, day, f"{round(v)}", "mmol/mol")
        return pl.DataFrame(
            rows, schema=dict.fromkeys(hba1c.INPUT, pl.Utf8) | {"sample_date": pl.Date}
        )

    participants = pl.DataFrame(
        {
            "person_id": ids,
            "treated": treated.astype(np.int8),
            "enrolled_on": enrolled,
            "exit_on": [
                (diabetes.anniversary(d, 12) if not e else d + dt.timedelta(int(k))) if t else None
                for d, e, k, t in zip(enrolled, exit_early, exit_days, treated, strict=True)
            ],
            "exit_reason": [
                ("dropped_out" if e else "completed") if t else None
                for e, t in zip(exit_early, treated, strict=True)
            ],
            "age": age.astype(np.int64),
            "sex": np.where(female, "F", "M"),
            "clinic": np.array(CLINICS)[clinic],
            "baseline_hba1c": base,
        }
    )
    worlds = {w: labs(w) for w in (0, 1)}
    chosen = set(ids[treated])
    delivered = pl.concat(
        [
            worlds[1].filter(pl.col("person_id").is_in(sorted(chosen))),
            worlds[0].filter(~pl.col("person_id").is_in(sorted(chosen))),
        ]
    ).sort("sample_date", "person_id")
    per_world = {w: diabetes.outcomes(participants, hba1c.validate(worlds[w])[0]) for w in (0, 1)}
    measured = set(ids[treated & eligible])
    truth = {
        "att": _att(per_world[1], per_world[0], measured, diabetes.OUTCOMES),
        "spec": {"seed": seed, "population": n, "effect_12m": effect_12m, "effect_24m": effect_24m},
        "n_treated": int(treated.sum()),
        "n_ineligible": int((~eligible).sum()),
    }
    return Cohort(participants, {"lab_results": delivered}, truth)


EMPLOYMENT_OUTCOMES = ("entered_work", "sustained_13_weeks", "sustained_26_weeks")
FOLLOW_UP_END = dt.date(2025, 12, 1)


def employment_cohort(
    seed: int = 0,
    population: int = 4000,
    effect_log_odds: float = 0.6,
    randomised: bool = False,
    cost_windows: tuple[int, ...] = (),
    follow_up_ends: tuple[dt.date, ...] = (),
) -> Cohort:
    """An employment social outcome contract (Koto-SIB / Norrköping style): jobseekers, some of
    whom take part (treated), the others a comparison group.

    Persons: age uniform integer 20..60, sex F w.p. 0.5, office uniform over OFFICES, months
    unemployed before enrolment uniform integer 0..36; enrolment uniform over 2024-01-01 ..
    2024-03-31. Participation: logit P = -0.8 - 0.06 (age - 40) + 0.12 (prior - 18) + office
    shift (-0.4, 0, 0.2, 0.4); with ``randomised`` P = 0.5 for everyone (an RCT). Each month
    after the enrolment month up to FOLLOW_UP_END (2025-12): a person not employed enters work
    w.p. expit(-2.6 - 0.03 (age - 40) - 0.09 (prior - 18) + 0.3 [M] + office level (0.3, 0,
    -0.2, -0.4) + effect_log_odds [treated world]); an employed person loses the job w.p. 0.10;
    a person not employed is in education or training w.p. 0.10, "other" w.p. 0.05, else
    unemployed. The enrolment month is "arbetslös" (a delivered Swedish label).
    Earnings in employed months: 16 000 + 300 (age - 20) + 50 x N(0, 1) kronor rounded to
    whole kronor (text); public costs: benefit 11 000.00 per unemployed month, placement
    14 500.50 per month in education or training (exact: Decimal(18, 2), so a CSV in the
    Swedish dialect gets decimal commas).

    frames: "employment_status" (person_id, month, status, earnings) and "public_costs"
    (person_id, month, cost_type, amount). truth["att"]: entered_work, sustained_13_weeks,
    sustained_26_weeks (utfall.domains.employment.outcomes to FOLLOW_UP_END) and cost_total
    (public cost from the month after enrolment to FOLLOW_UP_END, kronor, float). For each m in
    ``cost_windows`` also truth["att"][f"public_cost_{m}m"], the effect on the cost over the m
    months after the enrolment month (utfall.domains.public_costs.after_enrolment, the metric
    public_cost; persons whose window ends after FOLLOW_UP_END left out, as the metric does),
    and truth["savings"][f"public_cost_{m}m"], the true savings of those treated persons
    (exact: the sum over them of cost without minus cost with the programme). For each date e
    in ``follow_up_ends`` (a payment period's `through`), truth["att_at"][e.isoformat()] holds
    the same effects measured with follow-up ending at e instead of FOLLOW_UP_END, which is
    what a run of that payment period estimates.
    """
    r = _rng(seed, 11)
    n = population
    ids = np.array([f"e{i:05d}" for i in range(n)])
    age = r.integers(20, 61, n)
    female = r.random(n) < 0.5
    office = r.integers(0, len(OFFICES), n)
    prior = r.integers(0, 37, n)
    enrolled = _days(dt.date(2024, 1, 1), r.integers(0, 91, n))
    logit = -0.8 - 0.06 * (age - 40) + 0.12 * (prior - 18) + np.array([-0.4, 0, 0.2, 0.4])[office]
    p = np.full(n, 0.5) if randomised else _expit(logit)
    treated = _rng(seed, 12).random(n) < p
    first = np.array([d.month for d in enrolled])  # months 1..3 of 2024; the first after: +1
    horizon = 24  # months 2024-02 .. 2025-12 at most (index k: month 2024-01 + k)
    r = _rng(seed, 13)
    u_enter, u_leave, u_state = (r.random((n, horizon)) for _ in range(3))
    wage = 16000 + 300 * (age - 20)
    wage_noise = r.normal(0, 1, (n, horizon))
    hazard_lin = (
        -2.6
        - 0.03 * (age - 40)
        - 0.09 * (prior - 18)
        + 0.3 * ~female
        + np.array([0.3, 0.0, -0.2, -0.4])[office]
    )
    months = [employment._month_after(dt.date(2024, 1, 1), k) for k in range(horizon)]

    labels = np.array(["employed", "in_education_or_training", "other", "unemployed", "arbetslös"])
    k_index = np.arange(horizon)[None, :]
    delivered = k_index >= (first - 1)[:, None]  # the enrolment month and every month after
    earnings = np.round(wage[:, None] + 50 * wage_noise).astype(np.int64)
    month_of = np.array(months, dtype="datetime64[D]")

    def world(w: int) -> tuple[pl.DataFrame, pl.DataFrame]:
        enter = _expit(hazard_lin + (effect_log_odds if w else 0.0))
        working = np.zeros(n, dtype=bool)
        code = np.full((n, horizon), 4)
        for k in range(horizon):
            after = k >= first
            stay = working & (u_leave[:, k] >= 0.10)
            start = ~working & (u_enter[:, k] < enter)
            working = after & (stay | start)
            idle = np.where(u_state[:, k] < 0.10, 1, np.where(u_state[:, k] < 0.15, 2, 3))
            code[:, k] = np.where(after, np.where(working, 0, idle), 4)
        rows, cols = np.nonzero(delivered)
        c = code[rows, cols]
        status = pl.DataFrame(
            {
                "person_id": ids[rows],
                "month": month_of[cols],
                "status": labels[c],
                "earnings": pl.Series(earnings[rows, cols]).cast(pl.Utf8),
            }
        ).with_columns(
            pl.when(pl.Series(c == 0)).then(pl.col("earnings")).otherwise(None).alias("earnings")
        )
        paid = (c == 3) | (c == 1)
        costs = pl.DataFrame(
            {
                "person_id": ids[rows][paid],
                "month": month_of[cols][paid],
                "cost_type": np.where(c[paid] == 3, "benefit", "placement"),
                "amount": np.where(c[paid] == 3, "11000.00", "14500.50"),
            }
        ).with_columns(pl.col("amount").cast(public_costs.MONEY))  # exact, as a source writes it
        return status, costs

    participants = pl.DataFrame(
        {
            "person_id": ids,
            "treated": treated.astype(np.int8),
            "enrolled_on": enrolled,
            "age": age.astype(np.int64),
            "sex": np.where(female, "F", "M"),
            "office": np.array(OFFICES)[office],
            "prior_unemployed_months": prior.astype(np.int64),
        }
    )
    chosen = set(ids[treated])
    worlds = {w: world(w) for w in (0, 1)}
    per_world = {}
    for w, (status, costs) in worlds.items():
        # the simulator's rows are clean: map the labels as validate does, without its
        # row-by-row checks (the test checks that validate quarantines nothing here)
        mapped = status.with_columns(
            pl.col("status").replace_strict(employment.LABELS),
            pl.lit(None, dtype=employment.MONEY).alias("earnings"),
        )
        out = employment.outcomes(mapped, participants, FOLLOW_UP_END)
        exact = costs.with_columns(pl.col("amount").cast(public_costs.MONEY))
        per_world[w] = out.join(person_costs(exact, participants), on="person_id")
        enrolment = participants.select("person_id", "enrolled_on")
        for m in cost_windows:
            window, _ = public_costs.after_enrolment(exact, enrolment, m, FOLLOW_UP_END)
            per_world[w] = per_world[w].join(
                window.rename({"cost_total": f"public_cost_{m}m"}), on="person_id", how="left"
            )
    windows = tuple(f"public_cost_{m}m" for m in cost_windows)
    names = (*EMPLOYMENT_OUTCOMES, "cost_total", *windows)
    money = ("cost_total", *windows)
    att_at = {}
    for end in follow_up_ends:
        at_end = {}
        for w, (status, costs) in worlds.items():
            mapped = status.with_columns(
                pl.col("status").replace_strict(employment.LABELS),
                pl.lit(None, dtype=employment.MONEY).alias("earnings"),
            )
            exact = costs.with_columns(pl.col("amount").cast(public_costs.MONEY))
            at_end[w] = employment.outcomes(mapped, participants, end)
            for m in cost_windows:
                window, _ = public_costs.after_enrolment(
                    exact, participants.select("person_id", "enrolled_on"), m, end
                )
                at_end[w] = at_end[w].join(
                    window.rename({"cost_total": f"public_cost_{m}m"}), on="person_id", how="left"
                )
        att_at[end.isoformat()] = _att(
            at_end[1].with_columns(pl.col(windows).cast(pl.Float64)),
            at_end[0].with_columns(pl.col(windows).cast(pl.Float64)),
            chosen,
            (*EMPLOYMENT_OUTCOMES, *windows),
        )
    att = _att(
        per_world[1].with_columns(pl.col(money).cast(pl.Float64)),
        per_world[0].with_columns(pl.col(money).cast(pl.Float64)),
        chosen,
        names,
    )
    treated_only = pl.col("person_id").is_in(sorted(chosen))
    frames = {
        name: pl.concat(
            [worlds[1][j].filter(treated_only), worlds[0][j].filter(~treated_only)]
        ).sort("month", "person_id")
        for j, name in enumerate(("employment_status", "public_costs"))
    }
    saving = sum(
        (Decimal(str(v)) for v in per_world[0].filter(treated_only)["cost_total"]), Decimal(0)
    ) - sum((Decimal(str(v)) for v in per_world[1].filter(treated_only)["cost_total"]), Decimal(0))
    window_savings = {}
    for name in windows:
        both = (
            per_world[0]
            .select("person_id", name)
            .join(per_world[1].select("person_id", name), on="person_id", suffix="_with")
        )
        mine = both.filter(treated_only & pl.col(name).is_not_null())
        window_savings[name] = str(mine[name].sum() - mine[f"{name}_with"].sum())
    truth = {
        "att": att,
        "savings_total": saving,
        "savings": window_savings,
        "att_at": att_at,
        "n_treated": len(chosen),
        "spec": {
            "seed": seed,
            "population": n,
            "effect_log_odds": effect_log_odds,
            "randomised": randomised,
        },
    }
    return Cohort(participants, frames, truth)


def person_costs(costs: pl.DataFrame, participants: pl.DataFrame) -> pl.DataFrame:
    """Each participant's public cost (exact) from the month after enrolment to FOLLOW_UP_END:
    person_id, cost_total. `costs` are valid rows (public_costs.validate), amounts exact."""
    valid = costs
    parts = []
    for (start,), people in participants.group_by("enrolled_on"):
        after = employment._next_month(start.replace(day=1))
        parts.append(public_costs.totals(valid, people["person_id"], after, FOLLOW_UP_END))
    return pl.concat(parts).sort("person_id")


def iop_followup(
    seed: int = 0,
    baseline_quarters: int = 12,
    followup_quarters: int = 8,
    level: float = 0.40,
    trend_per_quarter: float = 0.002,
    effect: float = 0.05,
    denominator: int = 800,
) -> Cohort:
    """An IOP partnership's indicator series (no comparison group, no payment): per quarter
    from 2021Q1, the share of the area's young people in work or studies, numerator ~
    Binomial(denominator, p_q) with p_q = level + trend_per_quarter q (+ effect from the
    partnership's start, quarter ``baseline_quarters``). frames["indicator_panel"] is the
    estimators' unit_panel shape (one unit, "treated"), and truth["att"]["share_in_activity"]
    the mean over the follow-up quarters of (observed share - the share without the
    partnership, the same binomial draws' quantiles), i.e. the effect the historical trend
    baseline estimates. frames["indicator_delivery"] is the same series as a provider would
    deliver it to a ``unit_panel`` source (unit_id, period, treatment_start, share_in_activity,
    weight), for a ``panel_value`` outcome."""
    r = _rng(seed, 21)
    quarters = baseline_quarters + followup_quarters
    starts = [dt.date(2021 + q // 4, 3 * (q % 4) + 1, 1) for q in range(quarters)]
    start = starts[baseline_quarters]
    u = r.random((quarters, denominator))
    p0 = level + trend_per_quarter * np.arange(quarters)
    p1 = p0 + effect * (np.arange(quarters) >= baseline_quarters)
    y0, y1 = (u < p0[:, None]).sum(axis=1), (u < p1[:, None]).sum(axis=1)
    panel = pl.DataFrame(
        {
            "unit_id": ["partnership"] * quarters,
            "group": ["treated"] * quarters,
            "period_start": starts,
            "phase": [
                "baseline" if q < baseline_quarters else "measurement" for q in range(quarters)
            ],
            "treatment_start": [start] * quarters,
            "numerator": y1.astype(float),
            "denominator": [float(denominator)] * quarters,
        }
    )
    # as a provider delivers it to a unit_panel source (columns unit_id, period,
    # treatment_start, weight; outcome column share_in_activity = numerator / weight)
    delivery = panel.select(
        "unit_id",
        pl.col("period_start").alias("period"),
        "treatment_start",
        (pl.col("numerator") / pl.col("denominator")).alias("share_in_activity"),
        pl.col("denominator").alias("weight"),
    )
    follow = slice(baseline_quarters, None)
    truth = {
        "att": {"share_in_activity": float(np.mean((y1[follow] - y0[follow]) / denominator))},
        "spec": {
            "seed": seed,
            "level": level,
            "trend_per_quarter": trend_per_quarter,
            "effect": effect,
            "treatment_start": start.isoformat(),
        },
    }
    return Cohort(pl.DataFrame(), {"indicator_panel": panel, "indicator_delivery": delivery}, truth)
