"""Completeness and statistical expectations on a delivery, judged before measurement.

Pandera (in `utfall.validate`) decides whether each *row* is usable; this package decides
whether the *delivery as a whole* is: all months present, all plan units present, volumes
in line with the previous delivery and the baseline years, few empty values, values in
range, and the files matching the provider's control file. A partial delivery (the last
months cut off) passes every row rule and would otherwise produce a full report and a
proposed payment; here it fails `periods_present`, which blocks the measurement.

The checks are Great Expectations 1.x suites (one per source kind and expectation) run on
pandas frames in an ephemeral context. GX is imported only inside the functions that run
it: importing this package costs no GX import.

Use::

    results = check_source(kind, source_name, staged, plan, config, history,
                           delivered_rows=n)
    raise_if_blocked(results)              # QualityBlocked, one line per failure
    store monthly_profile(kind, staged, plan) as the next delivery's history
"""

from utfall.quality.config import DEFAULT_CONFIG, config_problems, resolve_config
from utfall.quality.control_file import check_control_file, control_file_result
from utfall.quality.data_docs import write_data_docs
from utfall.quality.results import (
    ExpectationResult,
    blocked_message,
    blocking_failures,
    raise_if_blocked,
)
from utfall.quality.suites import KINDS, check_source, monthly_profile

__all__ = [
    "DEFAULT_CONFIG",
    "KINDS",
    "ExpectationResult",
    "blocked_message",
    "blocking_failures",
    "check_control_file",
    "check_source",
    "config_problems",
    "control_file_result",
    "monthly_profile",
    "raise_if_blocked",
    "resolve_config",
    "write_data_docs",
]
