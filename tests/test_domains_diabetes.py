"""Diabetes outcomes by hand: the nearest sample to the anniversary within the window (ties:
the earlier; one day's samples: their mean; the window's edge), the 42 and 48 thresholds,
the change from baseline, and the estimators' person frame."""

from __future__ import annotations

import datetime as dt

import polars as pl

from utfall.domains import diabetes
from utfall.domains.person import person_frame

D = dt.date


def cohort():
    participants = pl.DataFrame(
        {
            "person_id": ["p1", "p2", "p3", "p4"],
            "treated": [1, 1, 0, 0],
            "enrolled_on": [D(2023, 1, 15), D(2024, 2, 29), D(2023, 6, 1), D(2023, 6, 1)],
            "baseline_hba1c": [45, None, 44, 44],
            "age": [55, 52, 58, 51],
            "sex": ["F", "M", "F", "M"],
            "clinic": ["c1", "c2", "c1", "c2"],
        }
    )
    labs = pl.DataFrame(
        [
            ("p1", D(2024, 1, 1), 41.0),  # 14 days before the anniversary: the nearest
            ("p1", D(2024, 2, 10), 44.0),
            ("p1", D(2025, 1, 15), 48.0),  # on the 24-month anniversary
            ("p2", D(2024, 1, 10), 46.0),  # 50 days before enrolment: the baseline
            ("p2", D(2025, 2, 18), 43.0),  # anniversary 2025-02-28: 10 days before ...
            ("p2", D(2025, 3, 10), 40.0),  # ... and 10 days after: the earlier wins
            ("p2", D(2026, 6, 30), 39.0),  # 24 months: 122 days away, outside the window
            ("p3", D(2024, 6, 1), 41.0),
            ("p3", D(2024, 6, 1), 42.0),  # two samples that day: their mean, 41.5
            ("p3", D(2025, 8, 30), 47.0),  # 90 days after: inside the window
            ("p4", D(2024, 8, 31), 40.0),  # 91 days after: outside
            ("x9", D(2024, 1, 1), 60.0),  # not a participant
        ],
        schema={"person_id": pl.Utf8, "sample_date": pl.Date, "hba1c_mmol_mol": pl.Float64},
        orient="row",
    )
    return participants, labs


def test_outcomes_by_hand():
    participants, labs = cohort()
    out = {r["person_id"]: r for r in diabetes.outcomes(participants, labs).to_dicts()}
    assert set(out) == {"p1", "p2", "p3", "p4"}
    p1, p2, p3, p4 = (out[k] for k in ("p1", "p2", "p3", "p4"))
    assert (p1["hba1c_12m"], p1["below_42_12m"], p1["progressed_48_12m"], p1["change_12m"]) == (
        41.0,
        1,
        0,
        -4.0,
    )
    assert (p1["hba1c_24m"], p1["below_42_24m"], p1["progressed_48_24m"], p1["change_24m"]) == (
        48.0,
        0,
        1,
        3.0,
    )
    assert p2["baseline_hba1c"] == 46.0
    assert (p2["sample_date_12m"], p2["change_12m"], p2["below_42_12m"]) == (
        D(2025, 2, 18),
        -3.0,
        0,
    )
    assert p2["hba1c_24m"] is None and p2["below_42_24m"] is None
    assert (p3["hba1c_12m"], p3["below_42_12m"], p3["hba1c_24m"]) == (41.5, 1, 47.0)
    assert p4["hba1c_12m"] is None and p4["change_12m"] is None


def test_observed_by_an_interim_through_only_complete_windows_count():
    """Observed by 2024-04-14: p1's 12-month window (anniversary 2024-01-15, +90 days ends
    2024-04-14) is complete and read as without the cut; p3's (anniversary 2024-06-01) has
    not yet begun: missing; p2's baseline sample from before the cut stays. By 2024-04-13
    p1's window is one day short: missing, although its nearest sample (2024-01-01) was
    already taken, since a nearer one could still come."""
    participants, labs = cohort()
    full = {r["person_id"]: r for r in diabetes.outcomes(participants, labs).to_dicts()}
    by = {
        r["person_id"]: r
        for r in diabetes.outcomes(participants, labs, observed_by=D(2024, 4, 14)).to_dicts()
    }
    assert (
        (by["p1"]["hba1c_12m"], by["p1"]["change_12m"])
        == (41.0, -4.0)
        == (
            full["p1"]["hba1c_12m"],
            full["p1"]["change_12m"],
        )
    )
    assert by["p1"]["hba1c_24m"] is None and by["p1"]["below_42_24m"] is None
    assert full["p3"]["hba1c_12m"] == 41.5 and by["p3"]["hba1c_12m"] is None
    assert by["p3"]["below_42_12m"] is None and by["p3"]["change_12m"] is None
    assert by["p2"]["baseline_hba1c"] == 46.0  # the baseline was observed before the cut
    early = diabetes.outcomes(participants, labs, observed_by=D(2024, 4, 13))
    assert early.filter(person_id="p1")["hba1c_12m"].to_list() == [None]


def test_anniversary_of_a_leap_day():
    assert diabetes.anniversary(D(2024, 2, 29), 12) == D(2025, 2, 28)
    assert diabetes.anniversary(D(2024, 2, 29), 24) == D(2026, 2, 28)
    assert diabetes.anniversary(D(2023, 11, 30), 3) == D(2024, 2, 29)


def test_summary_and_person_frame():
    participants, labs = cohort()
    out = diabetes.outcomes(participants, labs)
    s = {
        r["treated"]: r
        for r in diabetes.summary(
            out.join(participants.select("person_id", "treated"), on="person_id")
        ).to_dicts()
    }
    assert (s[1]["n_below_42_12m"], s[1]["below_42_12m"]) == (2, 0.5)
    assert (s[0]["n_below_42_12m"], s[0]["below_42_12m"]) == (1, 1.0)
    frame, dropped = person_frame(
        out,
        participants,
        "change_12m",
        numeric=("age", "baseline_hba1c"),
        categorical=("sex", "clinic"),
    )
    assert dropped == 1  # p4: no 12-month sample
    assert frame.schema == pl.Schema(
        {
            "person_id": pl.Utf8,
            "treated": pl.Int8,
            "y": pl.Float64,
            "age": pl.Float64,
            "baseline_hba1c": pl.Float64,
            "sex": pl.Utf8,
            "clinic": pl.Utf8,
        }
    )
    assert frame["y"].to_list() == [-4.0, -3.0, -2.5]
    assert frame["baseline_hba1c"].to_list() == [45.0, 46.0, 44.0]  # p2's from the lab rows
