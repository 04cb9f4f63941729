"""Effect estimators: every method returns an :class:`EffectResult`."""

from utfall.estimators.did import did_2x2
from utfall.estimators.result import EffectResult

__all__ = ["EffectResult", "did_2x2"]
