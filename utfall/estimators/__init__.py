"""Effect estimators: every method returns an :class:`EffectResult`.

Each method is one module here defining ``ESTIMATOR`` (see :mod:`utfall.estimators.base`);
:func:`get` looks one up by the plan's method name, :func:`registry` lists them all.
"""

from utfall.estimators.base import Design, EstimationError, Estimator, get, publishable, registry
from utfall.estimators.did import did_2x2
from utfall.estimators.result import EffectResult

__all__ = [
    "Design",
    "EffectResult",
    "EstimationError",
    "Estimator",
    "did_2x2",
    "get",
    "publishable",
    "registry",
]
