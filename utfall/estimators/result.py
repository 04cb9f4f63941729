"""The one result shape shared by every effect estimator (DiD, matching, IPW, synthetic control)."""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

__all__ = ["EffectResult", "to_jsonable"]


def to_jsonable(value: Any) -> Any:
    """Convert ``value`` recursively into plain JSON types.

    numpy scalars/arrays become Python floats/ints/lists, tuples become lists, dates become
    ISO strings, mapping keys become strings. Non-finite floats (NaN, +-inf) become ``None`` so
    the output is strict JSON (``json.dumps(..., allow_nan=False)`` succeeds).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    raise TypeError(f"cannot convert {type(value).__name__} to JSON")


@dataclass(frozen=True)
class EffectResult:
    """Estimated effect of the intervention on one outcome, by one method.

    All levels are in outcome units (e.g. short-term sick days per employee per quarter).
    ``estimate`` is treated observed minus treated counterfactual: negative = reduction.
    ``relative_estimate`` = ``estimate / counterfactual`` (e.g. -0.12 = a 12 % reduction).
    ``period`` names what the estimate covers ("measurement", or a sub-period such as
    "2025Q3" or "12m"); ``estimand`` says which effect it is ("ATT", "ATE", ...).
    ``diagnostics`` may be published (only the keys the estimator declares); ``restricted``
    holds per-unit or per-person detail that stays in the warehouse and never reaches a
    report (it is not in :meth:`to_dict`). ``warnings`` are sentences the report shows.
    ``naive`` is the unadjusted comparison of the groups (utfall.naive), shown beside it.
    """

    outcome: str
    method: str
    estimate: float
    std_error: float
    ci_low: float
    ci_high: float
    confidence: float
    n_treated: int
    n_comparison: int
    counterfactual: float
    observed: float
    relative_estimate: float
    relative_ci_low: float
    relative_ci_high: float
    diagnostics: dict
    parameters: dict
    period: str = "measurement"
    estimand: str = "ATT"
    restricted: dict = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    #: The naive comparison on the same input (utfall.naive), or None without a comparison
    #: group; set by the pipeline beside every method's estimate, never paid on.
    naive: dict | None = None

    def to_dict(self) -> dict:
        """JSON-ready dict with the fields in declaration order (stable keys).

        Floats are plain Python floats; non-finite values are ``None``; nested numpy values and
        dates inside ``diagnostics``/``parameters`` are converted as in :func:`to_jsonable`.
        """
        return {
            f.name: to_jsonable(getattr(self, f.name))
            for f in fields(self)
            if f.name != "restricted"
        }

    def restricted_dict(self) -> dict:
        """The restricted detail, JSON-ready (kept in the warehouse, never in a report)."""
        return to_jsonable(self.restricted)
