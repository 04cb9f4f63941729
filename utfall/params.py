"""Typed parameters of the plan's registries (metrics, estimators, payment rules).

A parameter spec lives here, not in `utfall.plan`, so every registry module can declare its
parameters without importing the plan loader (which imports the registries).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a metric, method or rule: its type, allowed values and default.

    `type` is "integer" (an int, never a bool or 14.0), "number" (int or float, not a
    bool) or "string". `minimum`/`maximum` bound numbers (inclusive); `choices` lists the
    allowed strings.
    """

    type: str
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    description: str = ""
