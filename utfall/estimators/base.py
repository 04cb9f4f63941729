"""The counterfactual engine's interface: what an estimator takes, what it returns, what it
declares, and the registry the plan's `counterfactual.method` is looked up in.

Every estimator is one module in `utfall.estimators` that defines a module-level
``ESTIMATOR = Estimator(...)``; :func:`registry` finds it, so adding a method is one module
and its tests (no list to edit). The plan schema's allowed methods and parameters come from
the registry, and so does the report's allow-list of publishable diagnostics: a diagnostic
an estimator does not declare in ``published_diagnostics`` never reaches a report.

Data shapes (``Estimator.data``) are fixed frames the pipeline builds from the deliveries:

``unit_panel``
    One row per unit and period: ``unit_id`` (Utf8), ``group`` ("treated"/"comparison"),
    ``period_start`` (Date), ``phase`` ("baseline"/"measurement"), ``treatment_start``
    (Date, null for units never treated; for a two-period design the measurement start),
    ``numerator`` and ``denominator`` (Float64, denominator > 0). The outcome level is
    ``numerator / denominator`` and the unit's weight (exposure) is ``denominator``; a panel
    delivered as a plain outcome without weights has ``denominator = 1``.
``person``
    One row per person: ``person_id`` (Utf8, a pseudonym), ``treated`` (Int8 0/1), ``y``
    (Float64, the outcome) and the covariate columns the method's formulas name, already
    cast to Float64 (numbers) or Utf8 (categories) so no term overflows a narrow type.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import polars as pl

from utfall.errors import MeasurementError
from utfall.estimators.result import EffectResult
from utfall.params import ParamSpec
from utfall.registry import discover

#: The input shapes an estimator can take (see the module docstring).
DATA_SHAPES: dict[str, str] = {
    "unit_panel": "one row per unit and period (numerator, denominator, group, phase)",
    "person": "one row per person (person_id, treated, y, covariates)",
}


class EstimationError(MeasurementError):
    """The method cannot give an answer on these data: no overlap or common support, too
    few treated or comparison units, a singular design, no convergence, a pre-period fit
    too poor. The message says which and what would be needed."""


@dataclass(frozen=True)
class Design:
    """Everything an estimator needs besides the data, all taken from the plan."""

    outcome: str
    parameters: Mapping[str, Any]
    confidence: float = 0.95
    seed: int = 0
    baseline: tuple[dt.date, dt.date] | None = None
    measurement: tuple[dt.date, dt.date] | None = None
    frequency: str = "quarterly"


@dataclass(frozen=True)
class Estimator:
    """A registered counterfactual method.

    ``fit(data, design)`` returns one :class:`EffectResult` for ``design.outcome`` (or
    raises :class:`EstimationError`); ``data`` names its input shape in DATA_SHAPES.
    ``published_diagnostics`` is the allow-list of ``EffectResult.diagnostics`` keys a
    report may show; per-unit or per-person detail belongs in ``EffectResult.restricted``.
    ``check`` returns problems of a parameter combination as (parameter, sentence) pairs,
    beyond what the typed ParamSpecs catch; it gets the parameters with defaults filled.
    """

    name: str
    data: str
    estimand: str
    fit: Callable[[pl.DataFrame, Design], EffectResult]
    parameters: Mapping[str, ParamSpec] = field(default_factory=dict)
    published_diagnostics: frozenset[str] = frozenset()
    description: str = ""
    check: Callable[[Mapping[str, Any]], list[tuple[str, str]]] | None = None
    #: False for methods on the treated series alone (historical baseline, ITS): a delivery
    #: without comparison units is then complete.
    needs_comparison: bool = True

    def __post_init__(self) -> None:
        if self.data not in DATA_SHAPES:
            raise ValueError(f"estimator {self.name}: unknown data shape {self.data!r}")


@cache
def registry() -> dict[str, Estimator]:
    """Every estimator module's ``ESTIMATOR``, by name (modules found, sorted, once)."""
    import utfall.estimators as package

    return discover(package, "ESTIMATOR", Estimator, lambda est: est.name)


def get(name: str) -> Estimator:
    try:
        return registry()[name]
    except KeyError:
        raise EstimationError(
            f"no estimator named {name!r}; known: {', '.join(registry())}"
        ) from None


def publishable(effect: Mapping[str, Any]) -> dict[str, Any]:
    """The diagnostics of a stored effect (``EffectResult.to_dict()``) a report may show:
    only the keys its estimator declares publishable."""
    allowed = get(effect["method"]).published_diagnostics
    return {k: v for k, v in (effect.get("diagnostics") or {}).items() if k in allowed}
