"""The outcome of one expectation on one source, and what a blocking failure does."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from utfall.errors import QualityBlocked


@dataclass(frozen=True)
class ExpectationResult:
    """One expectation's verdict on one source.

    `observed` is a short sentence for the report; like every message in utfall it names
    counts, months, units and columns, never row content or identity numbers. `details`
    is JSON-able: the expectation's parameters, what was counted, and under `gx` the Great
    Expectations results it was decided by (used to render Data Docs).
    """

    source: str
    expectation: str
    severity: str
    success: bool
    observed: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def blocks(self) -> bool:
        return self.severity == "block" and not self.success

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "expectation": self.expectation,
            "severity": self.severity,
            "success": self.success,
            "observed": self.observed,
            "details": copy.deepcopy(self.details),
        }


def blocking_failures(results: Iterable[ExpectationResult]) -> list[ExpectationResult]:
    """The failed results whose severity is `block`, in their original order."""
    return [r for r in results if r.blocks]


def blocked_message(failures: list[ExpectationResult]) -> str:
    lines = [f"{f.source}: {f.expectation}: {f.observed}" for f in failures]
    noun = "expectation" if len(failures) == 1 else "expectations"
    return (
        f"the delivery failed {len(failures)} blocking data-quality {noun}; "
        "nothing was measured:\n  " + "\n  ".join(lines)
    )


def raise_if_blocked(results: Iterable[ExpectationResult]) -> None:
    """Raise QualityBlocked, one line per failure (source: expectation: observed), if any
    block-severity expectation failed; return quietly otherwise."""
    failures = blocking_failures(results)
    if failures:
        raise QualityBlocked(blocked_message(failures))
