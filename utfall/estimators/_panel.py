"""Shared plumbing of the panel estimators (twfe, staggered, synthetic_control, its, historical,
composite): checking a ``unit_panel`` frame once, turning it into index arrays, and building
the :class:`EffectResult` with the relative effect by the delta method.

A panel is checked here, not in each method, so every method refuses bad input the same way:
an :class:`EstimationError` naming the column and rule (never a row's content).

Cohorts: unit u's first treated period g_u is the first period with period_start >=
treatment_start (never-treated units: g_u = -1). A "treated" unit must have a
treatment_start; a "comparison" unit must not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from utfall.estimators.base import Design, EstimationError
from utfall.estimators.result import EffectResult

COLUMNS = (
    "unit_id",
    "group",
    "period_start",
    "phase",
    "treatment_start",
    "numerator",
    "denominator",
)
_GROUPS = ("treated", "comparison")
_PHASES = ("baseline", "measurement")

#: Plan weight names: exposure = the rate's denominator, equal = every unit (row) alike.
WEIGHTS = ("exposure", "equal")


@dataclass(frozen=True)
class Panel:
    """A checked unit panel as arrays. Rows are sorted by (unit, period)."""

    units: list[str]  # sorted unit ids
    periods: list  # sorted distinct period_start dates
    unit: np.ndarray  # row -> unit index
    period: np.ndarray  # row -> period index
    y: np.ndarray  # numerator / denominator
    den: np.ndarray  # denominator
    treated: np.ndarray  # per unit: group == "treated"
    cohort: np.ndarray  # per unit: index of first treated period, -1 never treated
    measurement: np.ndarray  # per period: phase == "measurement"
    extra: dict  # other numeric columns, by name, per row

    @property
    def n_units(self) -> int:
        return len(self.units)

    @property
    def n_periods(self) -> int:
        return len(self.periods)

    def row_weights(self, weight: str) -> np.ndarray:
        return self.den if weight == "exposure" else np.ones_like(self.den)

    def unit_weights(self, weight: str) -> np.ndarray:
        """w_u: the unit's mean denominator over its rows (exposure) or 1 (equal)."""
        if weight == "equal":
            return np.ones(self.n_units)
        s = np.bincount(self.unit, weights=self.den, minlength=self.n_units)
        c = np.bincount(self.unit, minlength=self.n_units)
        return s / np.maximum(c, 1)

    def wide(self) -> np.ndarray:
        """units x periods matrix of y; NaN where a unit has no row."""
        out = np.full((self.n_units, self.n_periods), np.nan)
        out[self.unit, self.period] = self.y
        return out

    def period_label(self, p: int) -> str:
        return str(self.periods[p])


def load(panel: pl.DataFrame, method: str, extra: tuple[str, ...] = ()) -> Panel:
    """Check a unit_panel frame and return its arrays; EstimationError names what is wrong."""
    if not isinstance(panel, pl.DataFrame):
        raise EstimationError(f"{method}: panel must be a polars DataFrame")
    missing = [c for c in (*COLUMNS, *extra) if c not in panel.columns]
    if missing:
        raise EstimationError(f"{method}: the panel lacks column(s) {missing}")
    if panel.height == 0:
        raise EstimationError(f"{method}: the panel has no rows")
    nulls = [c for c in COLUMNS if c != "treatment_start" and panel[c].null_count() > 0]
    nulls += [c for c in extra if panel[c].null_count() > 0]
    if nulls:
        raise EstimationError(f"{method}: the panel has empty values in column(s) {nulls}")
    for c in ("numerator", "denominator", *extra):
        if not panel[c].dtype.is_numeric():
            raise EstimationError(f"{method}: column {c!r} must be numeric, is {panel[c].dtype}")
    for c in ("period_start", "treatment_start"):
        dtype = panel[c].dtype
        if not (dtype == pl.Date or isinstance(dtype, pl.Datetime) or dtype == pl.Null):
            raise EstimationError(f"{method}: column {c!r} must be a date, is {dtype}")
    df = panel.select(
        pl.col("unit_id").cast(pl.String),
        pl.col("group").cast(pl.String),
        pl.col("period_start").cast(pl.Date),
        pl.col("phase").cast(pl.String),
        pl.col("treatment_start").cast(pl.Date),
        pl.col("numerator").cast(pl.Float64),
        pl.col("denominator").cast(pl.Float64),
        *[pl.col(c).cast(pl.Float64) for c in extra],
    ).sort("unit_id", "period_start")
    bad = sorted(set(df["group"].unique().to_list()) - set(_GROUPS))
    if bad:
        raise EstimationError(f"{method}: unknown group value(s) {bad}; expected {list(_GROUPS)}")
    bad = sorted(set(df["phase"].unique().to_list()) - set(_PHASES))
    if bad:
        raise EstimationError(f"{method}: unknown phase value(s) {bad}; expected {list(_PHASES)}")
    num, den = df["numerator"].to_numpy(), df["denominator"].to_numpy()
    for name, v in (
        ("numerator", num),
        ("denominator", den),
        *((c, df[c].to_numpy()) for c in extra),
    ):
        if not np.all(np.isfinite(v)):
            raise EstimationError(f"{method}: column {name!r} has non-finite values (NaN or inf)")
    if np.any(den <= 0):
        raise EstimationError(
            f"{method}: denominator must be positive; {int(np.sum(den <= 0))} row(s) are <= 0"
        )
    dup = df.select("unit_id", "period_start").is_duplicated()
    if dup.any():
        raise EstimationError(
            f"{method}: {int(dup.sum())} rows repeat a (unit_id, period_start) pair; "
            "the panel needs one row per unit and period"
        )
    per_unit = (
        df.group_by("unit_id")
        .agg(
            pl.col("group").n_unique().alias("n_group"),
            pl.col("treatment_start").n_unique().alias("n_start"),
            pl.col("group").first(),
            pl.col("treatment_start").first(),
        )
        .sort("unit_id")
    )
    if (per_unit["n_group"] > 1).any() or (per_unit["n_start"] > 1).any():
        raise EstimationError(
            f"{method}: a unit's group and treatment_start must be the same on all its rows "
            f"({int(((per_unit['n_group'] > 1) | (per_unit['n_start'] > 1)).sum())} unit(s) vary)"
        )
    tr = (per_unit["group"] == "treated").to_numpy()
    has_start = per_unit["treatment_start"].is_not_null().to_numpy()
    if np.any(tr & ~has_start):
        raise EstimationError(
            f"{method}: {int(np.sum(tr & ~has_start))} treated unit(s) have no treatment_start"
        )
    if np.any(~tr & has_start):
        raise EstimationError(
            f"{method}: {int(np.sum(~tr & has_start))} comparison unit(s) have a treatment_start; "
            "comparison units must be never treated (leave it empty)"
        )
    phases = df.group_by("period_start").agg(pl.col("phase").n_unique().alias("n"))
    if (phases["n"] > 1).any():
        raise EstimationError(
            f"{method}: a period must have one phase on all rows "
            f"({int((phases['n'] > 1).sum())} period(s) have both)"
        )
    units = per_unit["unit_id"].to_list()
    periods = sorted(set(df["period_start"].to_list()))
    unit_idx = {u: i for i, u in enumerate(units)}
    per_idx = {p: i for i, p in enumerate(periods)}
    unit = np.array([unit_idx[u] for u in df["unit_id"].to_list()], dtype=np.int64)
    period = np.array([per_idx[p] for p in df["period_start"].to_list()], dtype=np.int64)
    meas = np.zeros(len(periods), dtype=bool)
    meas[period[df["phase"].to_numpy() == "measurement"]] = True
    starts = per_unit["treatment_start"].to_list()
    cohort = np.full(len(units), -1, dtype=np.int64)
    ps = np.array(periods, dtype="datetime64[D]")
    for i, s in enumerate(starts):
        if s is not None:
            k = int(np.searchsorted(ps, np.datetime64(s, "D"), side="left"))
            cohort[i] = k if k < len(periods) else len(periods)  # past the panel's end
    return Panel(
        units=units,
        periods=periods,
        unit=unit,
        period=period,
        y=num / den,
        den=den,
        treated=tr,
        cohort=cohort,
        measurement=meas,
        extra={c: df[c].to_numpy() for c in extra},
    )


def t_quantile(confidence: float, df: float) -> float:
    from scipy import stats

    if not math.isfinite(df):
        return float(stats.norm.ppf(0.5 + confidence / 2.0))
    return float(stats.t.ppf(0.5 + confidence / 2.0, df))


def relative_se(estimate: float, observed: float, psi_e: np.ndarray, psi_o: np.ndarray) -> float:
    """SE of R = E / (O - E) by the delta method from per-cluster influence contributions
    (Var(E) = sum psi_e^2, Var(O) = sum psi_o^2, covariance sum psi_e psi_o)."""
    cf = observed - estimate
    if cf <= 0:
        return math.nan
    g_e = observed / cf**2
    g_o = -estimate / cf**2
    return float(math.sqrt(np.sum((g_e * psi_e + g_o * psi_o) ** 2)))


def result(
    *,
    design: Design,
    method: str,
    estimand: str,
    estimate: float,
    std_error: float,
    ci: tuple[float, float],
    observed: float,
    n_treated: int,
    n_comparison: int,
    diagnostics: dict,
    rel_se: float | None = None,
    rel_ci: tuple[float, float] | None = None,
    df: float = math.inf,
    period: str = "measurement",
    restricted: dict | None = None,
    warnings: list[str] | None = None,
) -> EffectResult:
    """The EffectResult of a panel method: counterfactual CF = O - E, relative R = E / CF with
    the interval R +- t SE_R (or ``rel_ci`` given); NaN when CF <= 0."""
    cf = observed - estimate
    if cf > 0:
        rel = estimate / cf
        if rel_ci is None:
            if rel_se is None or not math.isfinite(rel_se):
                rel_ci = (math.nan, math.nan)
            else:
                q = t_quantile(design.confidence, df)
                rel_ci = (rel - q * rel_se, rel + q * rel_se)
    else:
        rel, rel_ci = math.nan, (math.nan, math.nan)
    warn = list(warnings or [])
    if cf <= 0:
        warn.append(f"the counterfactual level is {cf:.4g} <= 0: no relative effect")
    diagnostics = {**diagnostics, "warnings": warn}
    return EffectResult(
        outcome=design.outcome,
        method=method,
        estimate=float(estimate),
        std_error=float(std_error),
        ci_low=float(ci[0]),
        ci_high=float(ci[1]),
        confidence=design.confidence,
        n_treated=int(n_treated),
        n_comparison=int(n_comparison),
        counterfactual=float(cf),
        observed=float(observed),
        relative_estimate=float(rel),
        relative_ci_low=float(rel_ci[0]),
        relative_ci_high=float(rel_ci[1]),
        diagnostics=diagnostics,
        parameters=dict(design.parameters),
        period=period,
        estimand=estimand,
        restricted=restricted or {},
        warnings=tuple(warn),
    )
