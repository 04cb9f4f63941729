"""What the person-level estimators share: reading the ``person`` frame, robust OLS, the
relative effect and its interval, and the EffectResult they all return.

Input checks (each an EstimationError naming the column or parameter): ``treated`` present,
0/1 and never missing; ``y`` present, finite and never missing (nothing is dropped silently);
at least ``MIN_PER_GROUP`` treated and comparison persons.

Heteroskedasticity-robust OLS covariances (White 1980; MacKinnon and White 1985), with
X the n x p design, e the residuals, h_i the leverage x_i'(X'X)^-1 x_i::

    V = (X'X)^-1 [sum_i w_i e_i^2 x_i x_i'] (X'X)^-1
    HC0: w_i = 1      HC1: w_i = n / (n - p)   (Stata's ``robust``)
    HC2: w_i = 1 / (1 - h_i)                   HC3: w_i = 1 / (1 - h_i)^2

Relative effect: R = E / CF with CF the mean of Y(0) (E = O - CF). Its variance is the delta
method, g' S g, where S is the joint covariance of (O, CF) and g = (1/CF, -O/CF^2). If
CF <= 0 the relative numbers are NaN (a ratio to a non-positive level means nothing).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from utfall.estimators.base import Design, EstimationError
from utfall.estimators.formula import DesignMatrix, design_matrix, parse
from utfall.estimators.logit import check_rank
from utfall.estimators.result import EffectResult
from utfall.params import ParamSpec

MIN_PER_GROUP = 2

COVARIATES = ParamSpec(
    "string",
    default="",
    description="right-hand side of the outcome model over the person table's columns, as "
    "evaluators write it (e.g. 'age + I(age**2) + C(educ)'); empty for none",
)
PROPENSITY = ParamSpec(
    "string",
    default="",
    description="right-hand side of the logit propensity model (e.g. 'age + C(educ)'); required",
)


@dataclass(frozen=True)
class Persons:
    """The checked person frame as arrays: treatment indicator and outcome."""

    frame: pl.DataFrame
    d: np.ndarray  # float 0/1
    y: np.ndarray

    @property
    def n_treated(self) -> int:
        return int(self.d.sum())

    @property
    def n_comparison(self) -> int:
        return int(self.d.size - self.d.sum())


def one_blas_thread(fit):
    """Run an estimator with one BLAS thread: its products are tall and thin, where threads
    gain little and on a busy machine stall (the bootstrap of 100 000 persons ran 7x slower
    in wall time with two); and one thread fixes the order of floating-point sums, so the
    numbers are the same bits on any machine."""

    @functools.wraps(fit)
    def wrapped(data: pl.DataFrame, design: Design) -> EffectResult:
        with threadpool_limits(limits=1, user_api="blas"):
            return fit(data, design)

    return wrapped


def ordered(data: pl.DataFrame) -> pl.DataFrame:
    """The rows sorted by ``person_id``, so the delivery's row order changes nothing (not the
    matches a seeded tie-break picks, nor the last bit of a sum)."""
    if "person_id" not in data.columns:
        return data
    if data["person_id"].null_count():
        raise EstimationError(
            f"person data: 'person_id' is missing in {data['person_id'].null_count()} rows"
        )
    return data.sort("person_id", maintain_order=True)


def persons(data: pl.DataFrame, minimum: int = MIN_PER_GROUP) -> Persons:
    """Check the ``person`` shape and return its treatment and outcome as float arrays."""
    for col in ("treated", "y"):
        if col not in data.columns:
            raise EstimationError(f"person data: no column {col!r} (columns: {data.columns})")
    for col in ("treated", "y"):
        nulls = data[col].null_count()
        if nulls:
            raise EstimationError(f"person data: {col!r} is missing in {nulls} rows")
    d = data["treated"].cast(pl.Float64).to_numpy()
    if not np.all((d == 0) | (d == 1)):
        bad = int(np.sum((d != 0) & (d != 1)))
        raise EstimationError(f"person data: 'treated' is not 0 or 1 in {bad} rows")
    y = data["y"].cast(pl.Float64).to_numpy()
    if not np.all(np.isfinite(y)):
        raise EstimationError(
            f"person data: the outcome 'y' is not a finite number in {int(np.sum(~np.isfinite(y)))}"
            f" rows"
        )
    p = Persons(data, d, y)
    for label, n in (("treated", p.n_treated), ("comparison", p.n_comparison)):
        if n < minimum:
            raise EstimationError(
                f"too few {label} persons: {n}; the method needs at least {minimum}"
            )
    return p


def covariates(data: pl.DataFrame, text: str | None, parameter: str) -> DesignMatrix:
    """The design matrix of a plan's right-hand side."""
    return design_matrix(data, parse(text, parameter))


def ols_robust(
    x: np.ndarray, y: np.ndarray, names: tuple[str, ...], hc: str, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OLS coefficients, their HC covariance and the residuals (see the module docstring)."""
    check_rank(x, names, what)
    n, k = x.shape
    q, r = np.linalg.qr(x)
    beta = np.linalg.solve(r, q.T @ y)
    e = y - x @ beta
    r_inv = np.linalg.inv(r)
    xtx_inv = r_inv @ r_inv.T
    if hc == "HC0":
        w = np.ones(n)
    elif hc == "HC1":
        w = np.full(n, n / (n - k))
    else:
        h = np.einsum("ij,ij->i", q, q)
        if np.any(h > 1 - 1e-10):
            raise EstimationError(
                f"{what}: a person has leverage 1 (fits its own coefficient), so {hc} is not "
                f"defined; use fewer covariate terms or HC1"
            )
        w = 1 / (1 - h) if hc == "HC2" else 1 / (1 - h) ** 2
    xe = x * (e * np.sqrt(w))[:, None]
    meat = xe.T @ xe
    return beta, xtx_inv @ meat @ xtx_inv, e


def relative(observed: float, cf: float, cov_o_cf: np.ndarray) -> tuple[float, float]:
    """R = observed / cf - 1 and its delta-method SE from the 2x2 covariance of (O, CF)."""
    if not (cf > 0):
        return math.nan, math.nan
    g = np.array([1 / cf, -observed / cf**2])
    return observed / cf - 1, float(math.sqrt(max(g @ cov_o_cf @ g, 0.0)))


def critical(confidence: float, df: float | None = None) -> float:
    """Two-sided critical value: t with ``df`` degrees of freedom, or normal if None."""
    from scipy import stats

    p = 0.5 + confidence / 2
    return float(stats.norm.ppf(p) if df is None else stats.t.ppf(p, df))


def result(
    *,
    method: str,
    design: Design,
    estimand: str,
    estimate: float,
    se: float,
    observed: float,
    counterfactual: float,
    rel: tuple[float, float],
    n_treated: int,
    n_comparison: int,
    diagnostics: dict,
    parameters: dict,
    df: float | None = None,
    ci: tuple[float, float] | None = None,
    rel_ci: tuple[float, float] | None = None,
    restricted: dict | None = None,
    warnings: list[str] | None = None,
) -> EffectResult:
    """An EffectResult with symmetric intervals (t with ``df`` or normal) unless given."""
    z = critical(design.confidence, df)
    if ci is None:
        ci = (estimate - z * se, estimate + z * se)
    r, r_se = rel
    if rel_ci is None:
        rel_ci = (r - z * r_se, r + z * r_se)
    diagnostics = dict(diagnostics)
    diagnostics.setdefault("relative_se", r_se)
    diagnostics.setdefault("df", df)
    return EffectResult(
        outcome=design.outcome,
        method=method,
        estimate=float(estimate),
        std_error=float(se),
        ci_low=float(ci[0]),
        ci_high=float(ci[1]),
        confidence=design.confidence,
        n_treated=int(n_treated),
        n_comparison=int(n_comparison),
        counterfactual=float(counterfactual),
        observed=float(observed),
        relative_estimate=float(r),
        relative_ci_low=float(rel_ci[0]),
        relative_ci_high=float(rel_ci[1]),
        diagnostics=diagnostics,
        parameters=dict(parameters),
        estimand=estimand,
        restricted=restricted or {},
        warnings=tuple(warnings or ()),
    )


def formula_check(required: tuple[str, ...], optional: tuple[str, ...] = ()):
    """An ``Estimator.check``: the plan's formulas parse (caught when the plan is validated,
    before any data arrive) and the required ones are given."""
    from utfall.estimators.formula import FormulaError

    def check(params) -> list[tuple[str, str]]:
        problems = []
        for name in required + optional:
            text = params.get(name) or ""
            if name in required and not text.strip():
                problems.append(
                    (name, "give the right-hand side of the model, e.g. 'age + C(educ)'")
                )
                continue
            try:
                parse(text, name)
            except FormulaError as exc:
                problems.append((name, str(exc)))
        return problems

    return check


def parameters(design: Design, specs: dict[str, ParamSpec]) -> dict:
    """The plan's parameters with defaults filled; unknown names are an error."""
    unknown = sorted(set(design.parameters) - set(specs))
    if unknown:
        raise EstimationError(
            f"unknown parameter {unknown[0]!r}; known: {', '.join(sorted(specs))}"
        )
    return {k: design.parameters.get(k, s.default) for k, s in specs.items()}
