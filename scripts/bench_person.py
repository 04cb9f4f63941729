#!/usr/bin/env python3
"""Benchmark of the person-level estimators at the sizes issue 7 asks for.

    .venv/bin/python scripts/bench_person.py [--pool 1000000] [--treated 10000]
        [--cohort 100000] [--replications 1000] [--baseline-replications 20] [--seed 1]

Rows (each: persons, wall seconds, CPU seconds, peak traced memory, and the ratio of our wall
time to a baseline's):

* ``psm``: propensity-score matching, 1:1 with replacement, of ``--treated`` treated persons
  against a ``--pool`` comparison pool (covariates ``age + C(educ) + x``), all of the
  estimator's work: checks, logit, matching, Abadie-Imbens variance, balance table. Also
  1:1 without replacement. Baseline: the same logit by statsmodels (``Logit.fit``, Newton)
  and the same 1:1 nearest-neighbour search on the logit with scipy's cKDTree, then the mean
  matched difference (no variance, no balance table, no checks: less work than ours).
* ``ipw bootstrap``, ``aipw bootstrap``: ``--replications`` person-bootstrap replications on a
  ``--cohort`` cohort (propensity refitted in every replicate). Baseline: the textbook loop,
  resampling rows (``x[idx]``) and refitting statsmodels' Logit to convergence plus the Hajek
  means, timed on ``--baseline-replications`` replications and scaled to ``--replications``.

Everything runs with one BLAS thread, baselines included (the estimators do). Peak memory is
tracemalloc's peak over the timed call (numpy and polars buffers included);
the last line gives the process's maximum resident set size. Wall time on this shared 2-core
machine swings; CPU time is the steadier figure.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utfall.estimators.base import Design, get, registry  # noqa: E402

FORMULA = "age + C(educ) + x"


def cohort(n: int, seed: int, treated: int | None = None) -> pl.DataFrame:
    """Selection on observables as in scripts/study_person.py; with ``treated``, the logit's
    intercept is shifted so about that many persons are treated."""
    rng = np.random.default_rng(seed)
    age = rng.integers(20, 66, n)
    educ = rng.choice(np.array(["1", "2", "3"]), n, p=[0.3, 0.4, 0.3])
    x = rng.normal(size=n)
    lin = 0.04 * (age - 40) + 0.6 * (educ == "3") - 0.4 * (educ == "1") + 0.6 * x
    share = 0.3 if treated is None else treated / n
    # intercept solving mean(expit(a + lin)) = share, by bisection
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.mean(1 / (1 + np.exp(-(mid + lin)))) < share else (lo, mid)
    d = rng.random(n) < 1 / (1 + np.exp(-(lo + lin)))
    y = 10 + 0.1 * age + 2 * x + d + rng.normal(size=n)
    return pl.DataFrame(
        {
            "person_id": pl.int_range(n, eager=True).cast(pl.Utf8),
            "treated": pl.Series(d.astype(np.int8)),
            "y": y,
            "age": pl.Series(age.astype(np.int8)),
            "educ": educ,
            "x": x,
        }
    )


def timed(fn):
    """Wall and CPU seconds and peak traced memory of ``fn()``, with one BLAS thread (as the
    estimators run, see person_common.one_blas_thread), so the baselines run alike."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _timed(fn)


def _timed(fn):
    tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, wall, cpu, peak


def baseline_psm(frame: pl.DataFrame) -> float:
    import statsmodels.api as sm
    from scipy.spatial import cKDTree

    from utfall.estimators.propensity import propensity_design

    x, _ = propensity_design(frame, FORMULA)
    d = frame["treated"].to_numpy().astype(float)
    y = frame["y"].to_numpy()
    fit = sm.Logit(d, x).fit(disp=0, method="newton")
    lin = x @ fit.params
    t, c = d == 1, d == 0
    _, j = cKDTree(lin[c][:, None]).query(lin[t][:, None], k=1)
    return float(np.mean(y[t] - y[c][j]))


def baseline_bootstrap(frame: pl.DataFrame, reps: int, seed: int) -> np.ndarray:
    import statsmodels.api as sm

    from utfall.estimators.propensity import propensity_design

    x, _ = propensity_design(frame, FORMULA)
    d = frame["treated"].to_numpy().astype(float)
    y = frame["y"].to_numpy()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(reps):
        idx = rng.integers(0, d.size, d.size)
        xb, db, yb = x[idx], d[idx], y[idx]
        e = sm.Logit(db, xb).fit(disp=0, method="newton").predict(xb)
        w = np.where(db == 1, 1.0, e / (1 - e))
        out.append(
            np.sum(w * db * yb) / np.sum(w * db) - np.sum(w * (1 - db) * yb) / np.sum(w * (1 - db))
        )
    return np.array(out)


def row(label, persons, wall, cpu, peak, base_wall=None, note=""):
    ratio = f"{wall / base_wall:6.2f}" if base_wall else "     -"
    print(
        f"{label:34} {persons:>10,} {wall:8.2f} {cpu:8.2f} {peak / 2**20:9.0f} {ratio}  {note}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=int, default=1_000_000)
    ap.add_argument("--treated", type=int, default=10_000)
    ap.add_argument("--cohort", type=int, default=100_000)
    ap.add_argument("--replications", type=int, default=1000)
    ap.add_argument("--baseline-replications", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    registry()  # import every estimator module before timing

    print(f"{'task':34} {'persons':>10} {'wall s':>8} {'cpu s':>8} {'peak MiB':>9} {'ratio':>6}")
    big = cohort(args.pool + args.treated, args.seed, treated=args.treated)
    n1 = int(big["treated"].sum())
    _, bw, bc, bp = timed(lambda: baseline_psm(big))
    row("baseline psm (statsmodels+cKDTree)", big.height, bw, bc, bp)
    for repl in ("with", "without"):
        design = Design("y", {"propensity": FORMULA, "replacement": repl}, seed=args.seed)
        res, w, c, p = timed(lambda design=design: get("psm").fit(big, design))
        row(
            f"psm 1:1 {repl} replacement",
            big.height,
            w,
            c,
            p,
            bw,
            f"{n1:,} treated, ATT {res.estimate:.3f} (SE {res.std_error:.3f})",
        )

    small = cohort(args.cohort, args.seed + 1)
    _, bw, bc, bp = timed(lambda: baseline_bootstrap(small, args.baseline_replications, 5))
    scale = args.replications / args.baseline_replications
    row(
        "baseline bootstrap (statsmodels)",
        small.height,
        bw * scale,
        bc * scale,
        bp,
        note=f"{args.baseline_replications} replications timed, scaled x{scale:g}",
    )
    for method in ("ipw", "aipw"):
        params = {"propensity": FORMULA, "inference": "bootstrap"}
        design = Design("y", params | {"replications": args.replications}, seed=args.seed)
        res, w, c, p = timed(lambda method=method, design=design: get(method).fit(small, design))
        row(
            f"{method} bootstrap x{args.replications}",
            small.height,
            w,
            c,
            p,
            bw * scale,
            f"ATT {res.estimate:.3f}, 95% CI {res.ci_low:.3f} to {res.ci_high:.3f}",
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"max resident set size of the process: {rss:,.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
