"""Participant rows: each quarantine rule with its row, sex labels, eligibility ranges at the
bounds, duplicates, and the simulators' participants load clean."""

from __future__ import annotations

import datetime as dt

import polars as pl

from utfall.domains import participants
from utfall.simulate_cohorts import employment_cohort, health_cohort

D = dt.date
E = D(2024, 1, 10)


def frame(items):
    cols = ("person_id", "treated", "enrolled_on", "exit_on", "exit_reason", "age", "sex")
    return pl.DataFrame(
        [dict(zip(cols, i, strict=True)) | {"baseline_hba1c": b} for *i, b in items],
        schema={
            "person_id": pl.Utf8,
            "treated": pl.Utf8,
            "enrolled_on": pl.Date,
            "exit_on": pl.Date,
            "exit_reason": pl.Utf8,
            "age": pl.Int64,
            "sex": pl.Utf8,
            "baseline_hba1c": pl.Float64,
        },
    )


def test_rules_and_bounds():
    raw = frame(
        [
            ("a", "1", E, D(2025, 1, 10), "completed", 50, "Kvinna", 42.0),  # both lower bounds
            ("b", "0", E, None, None, 60, "man", 47.0),  # both upper bounds
            ("c", "2", E, None, None, 55, "F", 44.0),
            ("d", "1", E, D(2024, 1, 9), "completed", 55, "F", 44.0),
            ("e", "1", E, D(2024, 2, 1), None, 55, "F", 44.0),
            ("f", "1", E, None, "moved", 55, "F", 44.0),
            ("g", "1", E, D(2024, 2, 1), "bored", 55, "F", 44.0),
            ("h", "1", E, None, None, 55, "X", 44.0),
            ("i", "1", E, None, None, 121, "F", 44.0),
            ("j", "1", E, None, None, 61, "F", 44.0),
            ("k", "1", E, None, None, 55, "F", 41.9),
            ("l", "1", None, None, None, 55, "F", 44.0),
            ("m", "1", E, None, None, 55, "F", 44.0),
            ("m", "1", E, None, None, 55, "F", 44.0),
        ]
    )
    valid, bad = participants.validate(raw, age_range=(50, 60), baseline_range=(42, 47))
    assert valid.height + bad.height == raw.height
    assert valid.select("person_id", "treated", "sex").rows() == [("a", 1, "F"), ("b", 0, "M")]
    assert valid.schema["treated"] == pl.Int8
    assert bad.select("person_id", "rule").rows() == [
        ("c", "treated_not_0_1"),
        ("d", "exit_before_enrolment"),
        ("e", "exit_without_reason"),
        ("f", "reason_without_exit"),
        ("g", "unknown_exit_reason"),
        ("h", "unknown_sex"),
        ("i", "age_out_of_range"),
        ("j", "outside_eligibility"),
        ("k", "outside_eligibility"),
        ("l", "missing_field"),
        ("m", "duplicate_person"),
        ("m", "duplicate_person"),
    ]
    # without the plan's ranges j and k are eligible
    valid, _ = participants.validate(raw)
    assert {"j", "k"} <= set(valid["person_id"])


def test_simulated_participants_load_clean():
    h = health_cohort(seed=0, population=400).participants
    valid, bad = participants.validate(h, age_range=(50, 60), baseline_range=(42, 47))
    assert bad.height == 0 and valid.height == h.height
    e = employment_cohort(seed=0, population=300).participants
    valid, bad = participants.validate(e)
    assert bad.height == 0 and valid.height == e.height
