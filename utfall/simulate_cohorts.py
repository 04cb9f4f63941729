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
from typing import Any

import numpy as np
import polars as pl

from utfall.domains import diabetes, hba1c

__all__ = ["Cohort", "health_cohort"]

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
    """
    r = _rng(seed, 1)
    n = population
    ids = np.array([f"h{i:05d}" for i in range(n)])
    age = r.integers(50, 61, n)
    female = r.random(n) < 0.55
    clinic = r.integers(0, len(CLINICS), n)
    base = r.integers(42, 48, n).astype(float)
    enrolled = _days(dt.date(2023, 1, 1), r.integers(0, 365, n))
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

    def labs(world: int) -> pl.DataFrame:
        rows = {"person_id": [], "sample_date": [], "analyte": [], "value": [], "unit": []}

        def add(i, day, value, unit):
            rows["person_id"].append(ids[i])
            rows["sample_date"].append(day)
            rows["analyte"].append("HbA1c")
            rows["value"].append(value)
            rows["unit"].append(unit)

        for i in range(n):
            if old[i]:
                add(i, dt.date(2009, 3, 1), f"{old_value[i]:.1f}".replace(".", ","), "%")
            add(i, enrolled[i], f"{base[i]:.0f}", "mmol/mol")
            for m in diabetes.MONTHS:
                if present[m][i]:
                    v = mean[i] + drift[m] + noise[m][i] + (effect[m] if world else 0.0)
                    day = diabetes.anniversary(enrolled[i], m) + dt.timedelta(int(jitter[m][i]))
                    add(i, day, f"{max(round(v), 15)}", "mmol/mol")
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
    truth = {
        "att": _att(per_world[1], per_world[0], chosen, diabetes.OUTCOMES),
        "spec": {"seed": seed, "population": n, "effect_12m": effect_12m, "effect_24m": effect_24m},
        "n_treated": int(treated.sum()),
    }
    return Cohort(participants, {"lab_results": delivered}, truth)
