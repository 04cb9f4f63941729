#!/usr/bin/env python3
"""Simulation study of the panel estimators: bias and interval coverage against known truth.

    .venv/bin/python scripts/study_panel.py [--reps 500] [--seed 20261128]

Scenarios (each replicate draws a new panel from ``numpy.random.default_rng([seed, scenario,
rep])``, so any replicate can be re-drawn alone):

- ``staggered``: 60 units, 8 quarters; each unit first treated in period 2, 4 or 6 or never,
  each with probability 1/4; unit and period effects N(0, 1), noise N(0, 1). Effects differ
  by cohort and grow with exposure: effect(g, t) = -(0.5 + 0.25 (6 - g)) (1 + 0.5 (t - g)).
  Truth: the population ATT of the ``staggered`` method's overall aggregation (cohorts
  weighted by their population share 1/4 per post period): -2.375. Cohort sizes vary, as the
  influence-function SE assumes (with fixed cohort sizes it over-covers: 98.6 % measured).
  Methods: staggered (never treated and not yet treated controls) and twfe, whose variance
  weighting puts weight on forbidden comparisons here.
- ``synthetic_control``: 40 units, 30 periods (20 pre), a 3-factor model y_jt = 20 +
  lambda_j' f_t + e_jt (f_t random walks, lambda_j ~ U(0, 1)^3, e ~ N(0, 0.5^2)); unit 0 is
  treated (exchangeable with the donors by construction), constant effect -2.
- ``its``: one series of 48 quarters, treated from period 36, level change -3 and slope
  change -0.1 per quarter, trend 0.2, quarterly seasonality, AR(1) errors (rho 0.3, sd 1),
  seasonality modelled. Truth: the mean of the level and slope change over the 12 post periods.
  ``its_iid``: the same with independent N(0, 1) errors. Each is run with the default variance
  (AR(1) errors by REML, Satterthwaite df) and again with ``variance="newey_west"``.
- ``historical``: one series of 24 quarters with a linear trend and iid N(0, 1) noise, drop
  of -2 from period 16; trend baseline. Truth -2.

Prints a table: method, scenario, truth, mean estimate, bias as % of |truth|, 95 % coverage,
mean CI width, replicates, failures.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from published_panel_data import make_panel  # noqa: E402

from utfall.estimators import get  # noqa: E402
from utfall.estimators.base import Design, EstimationError  # noqa: E402

SCENARIOS = ("staggered", "synthetic_control", "its", "historical", "its_iid")


def _rng(seed: int, scenario: str, rep: int) -> np.random.Generator:
    return np.random.default_rng([seed, SCENARIOS.index(scenario), rep])


def _stagger_effect(g: int, t: int) -> float:
    return -(0.5 + 0.25 * (6 - g)) * (1 + 0.5 * (t - g))


STAGGER_T = 8
STAGGER_COHORTS = (2, 4, 6, None)
#: population ATT: cohorts equally likely, every post unit-period of a cohort counts once
STAGGER_TRUTH = sum(_stagger_effect(g, t) for g in (2, 4, 6) for t in range(g, STAGGER_T)) / sum(
    STAGGER_T - g for g in (2, 4, 6)
)


def staggered_panel(rng: np.random.Generator):
    cohorts = [STAGGER_COHORTS[k] for k in rng.integers(0, 4, 60)]
    y = rng.normal(0, 1, (60, 1)) + rng.normal(0, 1, (1, STAGGER_T))
    y = y + rng.normal(0, 1, (60, STAGGER_T))
    for u, g in enumerate(cohorts):
        if g is not None:
            for t in range(g, STAGGER_T):
                y[u, t] += _stagger_effect(g, t)
    return make_panel(y + 10, cohorts, measurement_from=2), STAGGER_TRUTH


def synthetic_panel(rng: np.random.Generator):
    n_u, n_t, t0 = 40, 30, 20
    f = rng.normal(0, 1, (n_t, 3)).cumsum(0)
    lam = rng.uniform(0, 1, (n_u, 3))
    y = 20 + lam @ f.T + rng.normal(0, 0.5, (n_u, n_t))
    y[0, t0:] += -2.0
    return make_panel(y, [t0] + [None] * (n_u - 1)), -2.0


def its_panel(rng: np.random.Generator):
    n, t0 = 48, 36
    t = np.arange(n)
    e = np.zeros(n)
    for i in range(n):
        e[i] = (0.3 * e[i - 1] if i else rng.normal(0, 1 / math.sqrt(1 - 0.09))) + rng.normal(0, 1)
    season = np.array([0.0, 1.0, -0.5, 0.8])[t % 4]
    y = 40 + 0.2 * t + season + e + (t >= t0) * (-3 - 0.1 * (t - t0))
    truth = float(np.mean(-3 - 0.1 * (t[t0:] - t0)))
    return make_panel(y[None, :], [t0]), truth


def its_iid_panel(rng: np.random.Generator):
    n, t0 = 48, 36
    t = np.arange(n)
    season = np.array([0.0, 1.0, -0.5, 0.8])[t % 4]
    y = 40 + 0.2 * t + season + rng.normal(0, 1, n) + (t >= t0) * (-3 - 0.1 * (t - t0))
    return make_panel(y[None, :], [t0]), float(np.mean(-3 - 0.1 * (t[t0:] - t0)))


def historical_panel(rng: np.random.Generator):
    n, t0 = 24, 16
    t = np.arange(n)
    y = 30 + 0.3 * t + rng.normal(0, 1, n) + (t >= t0) * -2.0
    return make_panel(y[None, :], [t0]), -2.0


#: the ITS rows again with OLS and Newey-West HAC at the rule's lags (under-covers here)
ITS_NW = {
    "model": "level_and_slope",
    "seasonality": "quarter",
    "variance": "newey_west",
    "hac_lags": -1,
}
CASES = [
    ("staggered", "staggered", {"control": "never_treated", "weight": "equal"}),
    ("staggered", "staggered", {"control": "not_yet_treated", "weight": "equal"}),
    ("staggered", "twfe", {"weight": "equal"}),
    ("synthetic_control", "synthetic_control", {}),
    ("its", "its", {"model": "level_and_slope", "seasonality": "quarter"}),
    ("its_iid", "its", {"model": "level_and_slope", "seasonality": "quarter"}),
    ("its", "its", ITS_NW),
    ("its_iid", "its", ITS_NW),
    ("historical", "historical", {"baseline": "trend"}),
]
MAKERS = {
    "staggered": staggered_panel,
    "synthetic_control": synthetic_panel,
    "its": its_panel,
    "historical": historical_panel,
    "its_iid": its_iid_panel,
}


def run_study(reps: int, seed: int, cases=CASES) -> list[dict]:
    """One row per (scenario, method, parameters): bias, coverage, width over ``reps``."""
    rows = []
    for scenario, method, params in cases:
        est = get(method)
        design = Design(outcome="y", parameters={**params}, seed=seed)
        estimates, covered, widths, failed = [], [], [], 0
        truth = math.nan
        for rep in range(reps):
            frame, truth = MAKERS[scenario](_rng(seed, scenario, rep))
            try:
                r = est.fit(frame, design)
            except EstimationError:
                failed += 1
                continue
            estimates.append(r.estimate)
            empty = math.isnan(r.ci_low)  # no value kept (synthetic_control's inversion)
            covered.append((not empty) and r.ci_low <= truth <= r.ci_high)
            widths.append(math.nan if empty else r.ci_high - r.ci_low)
        mean = float(np.mean(estimates))
        label = method + ("" if not params.get("control") else f" ({params['control']})")
        label += " (newey_west)" if params.get("variance") == "newey_west" else ""
        rows.append(
            {
                "scenario": scenario,
                "method": label,
                "truth": truth,
                "mean_estimate": mean,
                "bias_pct": 100 * (mean - truth) / abs(truth),
                "mc_se_pct": 100
                * float(np.std(estimates, ddof=1))
                / math.sqrt(len(estimates))
                / abs(truth),
                "coverage": float(np.mean(covered)),
                "median_width": float(np.nanmedian(widths)),
                "no_interval": int(np.sum(np.isnan(widths))),
                "reps": len(estimates),
                "failed": failed,
            }
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=500)
    ap.add_argument("--seed", type=int, default=20261128)
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = run_study(args.reps, args.seed)
    head = (
        f"{'scenario':<18} {'method':<30} {'truth':>8} {'mean':>8} {'bias %':>7} "
        f"{'(MC se)':>7} {'cover95':>7} {'med.width':>9} {'no CI':>5} {'reps':>5} {'fail':>4}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['scenario']:<18} {r['method']:<30} {r['truth']:>8.3f} {r['mean_estimate']:>8.3f} "
            f"{r['bias_pct']:>7.2f} {r['mc_se_pct']:>7.2f} {r['coverage']:>7.3f} "
            f"{r['median_width']:>9.3f} {r['no_interval']:>5} {r['reps']:>5} {r['failed']:>4}"
        )
    print(f"({args.reps} replicates per row, seed {args.seed}, {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
