"""Small synthetic unit panels for the panel-estimator tests (known truth)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl


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
