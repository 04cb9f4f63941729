"""Completeness and statistical expectations (Great Expectations) before measurement.

Every expectation is shown to stay quiet on the clean simulated example and to fire on a
delivery broken in exactly the way it is meant to catch, with the answer it must give.
The staged frames are the simulator's clean rows, typed as `utfall.validate.typed` types
them; the synthetic personnummer stands in for `person_id`, so a leak of row content into
a result would show up as an identity number.
"""

from __future__ import annotations

import pytest

from utfall.errors import QualityBlocked
from utfall.quality import (
    DEFAULT_CONFIG,
    ExpectationResult,
    blocking_failures,
    config_problems,
    raise_if_blocked,
    resolve_config,
)

ROSTER, SPELLS = "employee_roster", "sick_leave_spells"
ROSTER_CHECKS = [
    "volume_vs_history",
    "periods_present",
    "units_present",
    "null_share",
    "value_ranges",
]
SPELL_CHECKS = [
    "volume_vs_history",
    "volume_vs_baseline",
    "periods_present",
    "null_share",
    "value_ranges",
]


def test_config_problems_name_the_key():
    assert config_problems(DEFAULT_CONFIG) == []
    assert config_problems(None) == []
    bad = {
        "controlfile": "x.csv",
        "expectations": {
            "null_share": {"severity": "fatal", "max_share": 2},
            "volume_vs_histroy": {"severity": "warn"},
            "periods_present": {"severity": "block", "max_share": 0.1},
        },
    }
    assert config_problems(bad) == [
        ("controlfile", "unknown key; expected one of: control_file, expectations"),
        ("expectations.null_share.severity", "'fatal'; expected one of: block, warn, off"),
        ("expectations.null_share.max_share", "2 is outside 0.0..1.0"),
        (
            "expectations.volume_vs_histroy",
            "unknown expectation; expected one of: volume_vs_history, volume_vs_baseline, "
            "periods_present, units_present, null_share, value_ranges",
        ),
        ("expectations.periods_present.max_share", "unknown setting; expected one of: severity"),
    ]
    with pytest.raises(ValueError, match="expectations.null_share.severity"):
        resolve_config(bad)
    # A partial configuration keeps the defaults for the rest.
    merged = resolve_config({"expectations": {"null_share": {"max_share": 0.05}}})
    assert merged["expectations"]["null_share"] == {"severity": "warn", "max_share": 0.05}
    assert merged["expectations"]["periods_present"] == {"severity": "block"}
    assert DEFAULT_CONFIG["expectations"]["null_share"]["max_share"] == 0.02  # not mutated


def test_quality_blocked_message_has_one_line_per_blocking_failure():
    results = [
        ExpectationResult(
            "sick_leave",
            "periods_present",
            "block",
            False,
            "3 of 48 months have no row: 2025-10..2025-12",
        ),
        ExpectationResult(
            "sick_leave", "null_share", "warn", False, "extent 5.0 % empty (max 2.0 %)"
        ),
        ExpectationResult(
            "roster", "units_present", "block", True, "all 34 plan units have eligible employees"
        ),
        ExpectationResult(
            "roster", "value_ranges", "block", False, "birth_year: 3 rows outside 1900..2025"
        ),
    ]
    assert [r.expectation for r in blocking_failures(results)] == [
        "periods_present",
        "value_ranges",
    ]
    with pytest.raises(QualityBlocked) as err:
        raise_if_blocked(results)
    assert str(err.value).splitlines() == [
        "the delivery failed 2 blocking data-quality expectations; nothing was measured:",
        "  sick_leave: periods_present: 3 of 48 months have no row: 2025-10..2025-12",
        "  roster: value_ranges: birth_year: 3 rows outside 1900..2025",
    ]
    raise_if_blocked(results[1:3])  # a warn failure and a success: no error
