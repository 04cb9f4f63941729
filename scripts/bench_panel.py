#!/usr/bin/env python3
"""Benchmark the panel estimators; the headline case is synthetic control with all placebos.

    .venv/bin/python scripts/bench_panel.py [--donors 50] [--periods 40] [--repeat 3]

Cases (each timed ``--repeat`` times, the baseline once, the best wall time reported, CPU
time beside it, since this machine is shared):

- ``synthetic_control``: one treated unit, ``--donors`` donors x ``--periods`` periods (3/4
  pre-periods), the estimate and every donor as a placebo (donors + 1 weight fits), from the
  polars panel to the EffectResult. Baseline doing the same work: the same donors + 1 fits of
  the simplex-constrained least squares by scipy's SLSQP (the general-purpose route many
  synthetic-control scripts take), started at uniform weights, on the same matrices, with
  the same gaps and RMSPE ratios; its pre-period loss is printed beside ours (ours must not
  be larger).
- ``staggered`` and ``twfe``: 2 000 units x 12 periods, three cohorts and never treated.

Prints rows, wall and CPU seconds, peak traced memory of the call (tracemalloc) and the
process's peak RSS, and the ratio of our wall time to the baseline's.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from published_panel_data import make_panel  # noqa: E402
from scipy import optimize  # noqa: E402

from utfall.estimators import get  # noqa: E402
from utfall.estimators.base import Design  # noqa: E402


def timed(fn, repeat: int):
    best = None
    for _ in range(repeat):
        tracemalloc.start()
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        if best is None or wall < best[0]:
            best = (wall, cpu, peak, out)
    return best


def slsqp_all(y: np.ndarray, t0: int) -> float:
    """Baseline: the estimate and all placebos by SLSQP; returns the treated fit's loss."""
    n = y.shape[0]

    def fit(treated, pool):
        a, b = y[pool, :t0].T / np.sqrt(t0), y[treated, :t0] / np.sqrt(t0)
        j = len(pool)
        res = optimize.minimize(
            lambda w: float(np.sum((a @ w - b) ** 2)),
            np.full(j, 1 / j),
            jac=lambda w: 2 * a.T @ (a @ w - b),
            method="SLSQP",
            bounds=[(0, 1)] * j,
            constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
            options={"maxiter": 500, "ftol": 1e-12},
        )
        gap = y[treated] - res.x @ y[pool]
        ratio = np.sqrt(np.mean(gap[t0:] ** 2)) / np.sqrt(np.mean(gap[:t0] ** 2))
        return float(res.fun), float(ratio)

    loss, _ = fit(0, list(range(1, n)))
    for j in range(1, n):
        fit(j, [k for k in range(1, n) if k != j])
    return loss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--donors", type=int, default=50)
    ap.add_argument("--periods", type=int, default=40)
    ap.add_argument("--units", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(7)
    n_u, n_t = args.donors + 1, args.periods
    t0 = (3 * n_t) // 4
    f = rng.normal(0, 1, (n_t, 3)).cumsum(0)
    y = 20 + rng.uniform(0, 1, (n_u, 3)) @ f.T + rng.normal(0, 0.5, (n_u, n_t))
    y[0, t0:] -= 2
    frame = make_panel(y, [t0] + [None] * args.donors)
    sc = get("synthetic_control")
    design = Design(outcome="y", parameters={})
    print(f"{'case':<34} {'rows':>8} {'wall s':>8} {'cpu s':>8} {'peak MB':>8} {'ratio':>7}")

    wall, cpu, peak, res = timed(lambda: sc.fit(frame, design), args.repeat)
    bwall, bcpu, bpeak, bloss = timed(lambda: slsqp_all(y, t0), 1)  # slow: once
    ours_loss = res.diagnostics["pre_rmspe"] ** 2  # mean squared pre-period gap
    label = f"synthetic_control {args.donors}x{args.periods}+all"
    print(
        f"{label:<34} {frame.height:>8} {wall:>8.3f} {cpu:>8.3f} {peak:>8.1f} {wall / bwall:>7.4f}"
    )
    print(
        f"{'  baseline: SLSQP, same fits':<34} {frame.height:>8} {bwall:>8.3f} {bcpu:>8.3f} "
        f"{bpeak:>8.1f} {1.0:>7.2f}"
    )
    print(f"  pre-period mean squared gap: ours {ours_loss:.6g}, SLSQP {bloss:.6g}")

    cohorts = [3] * (args.units // 4) + [6] * (args.units // 4) + [9] * (args.units // 4)
    cohorts += [None] * (args.units - len(cohorts))
    yy = rng.normal(0, 1, (args.units, 1)) + rng.normal(0, 1, (args.units, 12))
    big = make_panel(yy, cohorts, measurement_from=3)
    for name in ("staggered", "twfe"):
        est = get(name)
        d = Design(outcome="y", parameters={})
        wall, cpu, peak, _ = timed(lambda est=est, d=d: est.fit(big, d), args.repeat)
        label = f"{name} {args.units}x12"
        print(f"{label:<34} {big.height:>8} {wall:>8.3f} {cpu:>8.3f} {peak:>8.1f} {'':>7}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS {rss:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
