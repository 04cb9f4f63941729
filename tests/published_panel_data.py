"""Public panel data sets that ship in PyPI packages, as ``unit_panel`` frames.

Reusable by an end-to-end plan test: each loader returns the frame the panel estimators
take (utfall.estimators.base docstring), with annual periods as Jan 1 dates.

- ``mpdta()``: county teen employment, 2003-2007 (Callaway and Sant'Anna 2021's ``did``
  package example; shipped by ``moderndid``): outcome lemp (log teen employment), cohorts
  first treated 2004, 2006, 2007, never treated; 500 counties. Phase: measurement from 2004.
- ``castle()``: US states 2000-2010 (Cheng and Hoekstra 2013, castle-doctrine laws; shipped
  by ``causaldata``): outcome l_homicide (log homicide rate), weight popwt; a state's
  treatment_start is Jan 1 of the first year its ``post`` share is > 0.

``make_panel`` builds small synthetic panels of known truth in the same shape (quarters).
"""

from __future__ import annotations

import datetime as dt
import importlib.resources

import numpy as np
import pandas as pd
import polars as pl


def _frame(units, years, y, weight, first_year, measurement_from) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "unit_id": [str(u) for u in units],
            "group": ["treated" if f else "comparison" for f in first_year],
            "period_start": [dt.date(int(t), 1, 1) for t in years],
            "phase": ["measurement" if t >= measurement_from else "baseline" for t in years],
            "treatment_start": [dt.date(int(f), 1, 1) if f else None for f in first_year],
            "numerator": [float(a) * float(b) for a, b in zip(y, weight, strict=True)],
            "denominator": [float(b) for b in weight],
        },
        schema_overrides={"treatment_start": pl.Date},
    )


def mpdta() -> pl.DataFrame:
    path = importlib.resources.files("moderndid") / "core/datasets/mpdta_long.pkl.gz"
    with importlib.resources.as_file(path) as p:
        d = pd.read_pickle(p)
    first = [int(f) if f > 0 else 0 for f in d["first.treat"]]
    return _frame(d["countyreal"], d["year"], d["lemp"], [1.0] * len(d), first, 2004)


def castle() -> pl.DataFrame:
    import causaldata

    d = causaldata.castle.load_pandas().data
    first_by_state = d[d["post"] > 0].groupby("sid")["year"].min().to_dict()
    first = [int(first_by_state.get(s, 0)) for s in d["sid"]]
    return _frame(d["sid"].astype(int), d["year"], d["l_homicide"], d["popwt"], first, 2005)


def quarter(k: int) -> dt.date:
    return dt.date(2020 + k // 4, 1 + 3 * (k % 4), 1)


def make_panel(
    y: np.ndarray,
    cohort: list[int | None],
    den: np.ndarray | None = None,
    measurement_from: int | None = None,
) -> pl.DataFrame:
    """A unit_panel from a units x periods matrix of rates; cohort[u] = first treated period
    index (None = never treated); phase = measurement from ``measurement_from`` (default:
    the earliest cohort)."""
    n_u, n_t = y.shape
    if den is None:
        den = np.ones_like(y)
    starts = [c for c in cohort if c is not None]
    m0 = measurement_from if measurement_from is not None else (min(starts) if starts else n_t)
    rows = []
    for u in range(n_u):
        for t in range(n_t):
            c = cohort[u]
            rows.append(
                {
                    "unit_id": f"u{u:03d}",
                    "group": "comparison" if c is None else "treated",
                    "period_start": quarter(t),
                    "phase": "measurement" if t >= m0 else "baseline",
                    "treatment_start": None if c is None else quarter(c),
                    "numerator": float(y[u, t] * den[u, t]),
                    "denominator": float(den[u, t]),
                }
            )
    return pl.DataFrame(rows, schema_overrides={"treatment_start": pl.Date})
