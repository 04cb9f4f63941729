"""The quality section of a plan: which expectations run, how strict, and what a failure does.

A plan may name only the expectations it wants to change; the rest keep their defaults, so
`{"expectations": {"null_share": {"severity": "off"}}}` is a complete configuration.
Severity `block` stops the measurement when the expectation fails, `warn` reports it and
lets the measurement go on, `off` does not run it at all.
"""

from __future__ import annotations

import copy
from typing import Any

from utfall.plan import QUALITY_DEFAULTS

SEVERITIES = ("block", "warn", "off")

#: The defaults, in the order the expectations are run and reported: the plan's own, so
#: there is one place that says them.
DEFAULT_CONFIG: dict[str, Any] = QUALITY_DEFAULTS

#: Numeric parameters each expectation takes, with their allowed range (inclusive).
PARAMETERS: dict[str, dict[str, tuple[float, float]]] = {
    "volume_vs_history": {"max_relative_change": (0.0, 10.0)},
    "volume_vs_baseline": {"max_relative_change": (0.0, 10.0)},
    "periods_present": {},
    "units_present": {},
    "null_share": {"max_share": (0.0, 1.0)},
    "value_ranges": {},
}


def config_problems(config: Any) -> list[tuple[str, str]]:
    """Every problem of a quality configuration as (key path, problem), like PlanError's.

    An empty list means `resolve_config(config)` will accept it. Key paths are relative to
    the configuration (the plan loader can prefix them with `quality.`).
    """
    if config is None:
        return []
    if not isinstance(config, dict):
        return [("", f"expected a mapping, got {type(config).__name__}")]
    problems: list[tuple[str, str]] = []
    for key in config:
        if key not in DEFAULT_CONFIG:
            problems.append(
                (str(key), f"unknown key; expected one of: {', '.join(DEFAULT_CONFIG)}")
            )
    control = config.get("control_file")
    if control is not None and (not isinstance(control, str) or not control.strip()):
        problems.append(("control_file", "expected a file name relative to the deliveries folder"))
    expectations = config.get("expectations", {})
    if not isinstance(expectations, dict):
        return [*problems, ("expectations", "expected a mapping of expectation name to settings")]
    for name, settings in expectations.items():
        where = f"expectations.{name}"
        if name not in PARAMETERS:
            problems.append(
                (where, f"unknown expectation; expected one of: {', '.join(PARAMETERS)}")
            )
            continue
        if not isinstance(settings, dict):
            problems.append((where, "expected a mapping with `severity` and parameters"))
            continue
        for key, value in settings.items():
            if key == "severity":
                if value not in SEVERITIES:
                    problems.append(
                        (
                            f"{where}.severity",
                            f"{value!r}; expected one of: {', '.join(SEVERITIES)}",
                        )
                    )
            elif key in PARAMETERS[name]:
                low, high = PARAMETERS[name][key]
                if isinstance(value, bool) or not isinstance(value, int | float):
                    problems.append((f"{where}.{key}", f"expected a number, got {value!r}"))
                elif not low <= value <= high:
                    problems.append((f"{where}.{key}", f"{value} is outside {low}..{high}"))
            else:
                allowed = ", ".join(["severity", *PARAMETERS[name]])
                problems.append((f"{where}.{key}", f"unknown setting; expected one of: {allowed}"))
    return problems


def resolve_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """The defaults overlaid with `config` (per expectation, per setting); ValueError if bad."""
    problems = config_problems(config)
    if problems:
        raise ValueError(
            "invalid quality configuration: "
            + "; ".join(f"{key or '<root>'}: {problem}" for key, problem in problems)
        )
    resolved = copy.deepcopy(DEFAULT_CONFIG)
    config = config or {}
    if "control_file" in config:
        resolved["control_file"] = config["control_file"]
    for name, settings in config.get("expectations", {}).items():
        resolved["expectations"][name].update(settings)
    return resolved
