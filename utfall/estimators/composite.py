"""A pre-specified composite of two registered panel methods with fixed weights
(``composite``; e.g. Massachusetts' Roca contract: 0.8 x one estimate + 0.2 x another).

Method, so that a validator can recompute it
============================================

Parameters name two methods A and B (registered, ``unit_panel``, not ``composite``), their
parameters as ``"name=value, name=value"`` (typed and checked against each method's
parameters; defaults fill the rest) and the weight a of A (B gets 1 - a).

Estimate E = a E_A + (1 - a) E_B, observed O = a O_A + (1 - a) O_B, counterfactual CF = O - E.

Variance: both estimates come from the same units, so they are correlated. A unit (cluster)
bootstrap, stratified by group: each of ``bootstrap`` replicates draws, with replacement and
``numpy.random.default_rng(seed)``, as many treated units from the treated units and as many
comparison units from the comparison units as there are (a drawn unit keeps all its rows
under a new id), and refits both methods. With S the bootstrap covariance of (E_A, E_B):

    Var(E) = (a, 1 - a) S (a, 1 - a)'

SE = sqrt(Var(E)); interval E +- z SE (normal). The relative effect's SE is the bootstrap SD
of E* / (O* - E*). Replicates in which a method refuses the data are counted; if more than
5 % fail the composite is refused, otherwise a warning says how many were left out.
The methods' own intervals and the bootstrap correlation of E_A and E_B are reported.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from utfall.errors import MeasurementError
from utfall.estimators import _panel
from utfall.estimators.base import Design, EstimationError, Estimator, get
from utfall.estimators.result import EffectResult
from utfall.params import ParamSpec

METHOD = "composite"
MAX_FAILED_SHARE = 0.05


def parse_parameters(method: str, text: str) -> dict[str, Any]:
    """``"a=1, b=x"`` -> typed parameters of ``method`` with defaults filled in."""
    est = get(method)
    given: dict[str, Any] = {}
    for part in (p.strip() for p in str(text or "").split(",")):
        if not part:
            continue
        name, sep, raw = part.partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep or name not in est.parameters:
            raise EstimationError(
                f"{METHOD}: {part!r} is not a parameter of {method} "
                f"(known: {', '.join(est.parameters) or 'none'})"
            )
        spec = est.parameters[name]
        try:
            value: Any = (
                int(raw) if spec.type == "integer" else float(raw) if spec.type == "number" else raw
            )
        except ValueError:
            raise EstimationError(
                f"{METHOD}: parameter {name} of {method} must be a {spec.type}, got {raw!r}"
            ) from None
        if spec.choices and value not in spec.choices:
            raise EstimationError(
                f"{METHOD}: parameter {name} of {method} must be one of {list(spec.choices)}"
            )
        if (spec.minimum is not None and value < spec.minimum) or (
            spec.maximum is not None and value > spec.maximum
        ):
            raise EstimationError(f"{METHOD}: parameter {name} of {method} is out of range")
        given[name] = value
    return {n: given.get(n, s.default) for n, s in est.parameters.items()}


def _component(params: Mapping[str, Any], key: str) -> tuple[str, dict]:
    method = str(params[f"method_{key}"])
    est = get(method)
    if est.name == METHOD or est.data != "unit_panel":
        raise EstimationError(
            f"{METHOD}: method_{key} must be a unit_panel method other than composite, "
            f"not {method!r}"
        )
    return method, parse_parameters(method, params.get(f"parameters_{key}", ""))


def _check(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    problems = []
    for key in ("a", "b"):
        try:
            _component(params, key)
        except EstimationError as exc:
            problems.append((f"method_{key}", str(exc)))
    return problems


def _resample(frame: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    units = frame.select("unit_id", "group").unique().sort("unit_id")
    picks = []
    for grp in ("treated", "comparison"):
        ids = units.filter(pl.col("group") == grp)["unit_id"].to_list()
        if ids:
            picks += [ids[i] for i in rng.integers(0, len(ids), len(ids))]
    mapping = pl.DataFrame(
        {"unit_id": picks, "new_id": [f"{u}#{k}" for k, u in enumerate(picks)]},
        schema={"unit_id": pl.String, "new_id": pl.String},
    )
    return (
        frame.join(mapping, on="unit_id", how="inner")
        .drop("unit_id")
        .rename({"new_id": "unit_id"})
        .select(frame.columns)
    )


def composite(panel: pl.DataFrame, design: Design) -> EffectResult:
    """Fixed-weight composite with a unit-bootstrap variance (module docstring)."""
    prm = design.parameters
    a = float(prm.get("weight_a", 0.8))
    weights = np.array([a, 1.0 - a])
    reps = int(prm.get("bootstrap", 499))
    comps = [_component(prm, "a"), _component(prm, "b")]
    frame = panel.with_columns(pl.col("unit_id").cast(pl.String))
    fits = []
    for method, params in comps:
        sub = dataclasses.replace(design, parameters=params)
        try:
            fits.append(get(method).fit(frame, sub))
        except MeasurementError as exc:
            raise EstimationError(f"{METHOD}: {method} cannot estimate: {exc}") from exc
    est = float(weights @ [f.estimate for f in fits])
    obs = float(weights @ [f.observed for f in fits])
    rng = np.random.default_rng(design.seed)
    draws, rel, failed = [], [], 0
    for _ in range(reps):
        sample = _resample(frame, rng)
        try:
            row = []
            for method, params in comps:
                sub = dataclasses.replace(design, parameters=params)
                row.append(get(method).fit(sample, sub))
        except MeasurementError:  # EstimationError and did_2x2's refusals
            failed += 1
            continue
        e = [r.estimate for r in row]
        o = [r.observed for r in row]
        draws.append(e)
        ec, oc = float(weights @ e), float(weights @ o)
        rel.append(ec / (oc - ec) if oc - ec > 0 else math.nan)
    warnings: list[str] = []
    for (method, _), f in zip(comps, fits, strict=True):
        warnings += [f"{method}: {w}" for w in f.warnings]
    if failed > MAX_FAILED_SHARE * reps:
        raise EstimationError(
            f"{METHOD}: {failed} of {reps} bootstrap replicates could not be estimated by the "
            "component methods; the data are too thin for a bootstrap variance"
        )
    if failed:
        warnings.append(f"{failed} of {reps} bootstrap replicates failed and were left out")
    d = np.array(draws)
    cov = np.cov(d, rowvar=False)
    se = float(math.sqrt(max(weights @ cov @ weights, 0.0)))
    z = _panel.t_quantile(design.confidence, math.inf)
    sd = np.sqrt(np.diag(cov))
    corr = float(cov[0, 1] / (sd[0] * sd[1])) if sd.min() > 0 else None
    rel_arr = np.array(rel)
    rel_se = float(np.std(rel_arr, ddof=1)) if np.all(np.isfinite(rel_arr)) else math.nan
    diagnostics = {
        "weights": {comps[0][0]: a, comps[1][0]: 1.0 - a},
        "components": [
            {
                "method": m,
                "parameters": params,
                "estimate": f.estimate,
                "std_error": f.std_error,
                "ci_low": f.ci_low,
                "ci_high": f.ci_high,
                "bootstrap_std_error": float(s),
                "observed": f.observed,
                "n_treated": f.n_treated,
                "n_comparison": f.n_comparison,
            }
            for (m, params), f, s in zip(comps, fits, sd, strict=True)
        ],
        "bootstrap": {
            "replicates": reps,
            "failed": failed,
            "correlation": corr,
            "seed": design.seed,
            "variance": "stratified unit bootstrap covariance of the two estimates, normal CI",
        },
    }
    return _panel.result(
        design=design,
        method=METHOD,
        estimand=f"{a:g} x {comps[0][0]} + {1 - a:g} x {comps[1][0]}",
        estimate=est,
        std_error=se,
        ci=(est - z * se, est + z * se),
        observed=obs,
        n_treated=max(f.n_treated for f in fits),
        n_comparison=max(f.n_comparison for f in fits),
        diagnostics=diagnostics,
        rel_se=rel_se,
        warnings=warnings,
    )


ESTIMATOR = Estimator(
    name=METHOD,
    data="unit_panel",
    estimand="ATT",
    fit=composite,
    parameters={
        "method_a": ParamSpec("string", default="did_2x2", description="first method's name"),
        "parameters_a": ParamSpec(
            "string", default="", description="first method's parameters: 'name=value, ...'"
        ),
        "method_b": ParamSpec("string", default="twfe", description="second method's name"),
        "parameters_b": ParamSpec(
            "string", default="", description="second method's parameters: 'name=value, ...'"
        ),
        "weight_a": ParamSpec(
            "number",
            default=0.8,
            minimum=0.0,
            maximum=1.0,
            description="weight of the first method's estimate; the second gets 1 - weight_a",
        ),
        "bootstrap": ParamSpec(
            "integer",
            default=499,
            minimum=50,
            maximum=100_000,
            description="unit bootstrap replicates for the composite's variance (seeded by "
            "counterfactual.seed)",
        ),
    },
    published_diagnostics=frozenset(("weights", "components", "bootstrap", "warnings")),
    description="pre-specified fixed-weight composite of two panel methods, unit bootstrap",
    check=_check,
)
