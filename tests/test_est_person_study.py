"""scripts/study_person.py, small: the person-level estimators recover a known effect under
selection on observables, and the naive difference does not (the full study runs 500
replications; its table is in the script's docstring run)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import polars as pl
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "study_person.py"


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("study_person", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["study_person"] = module
    spec.loader.exec_module(module)
    return module


def test_cohort_has_narrow_types_and_selection(study):
    frame = study.simulate_cohort(3000, 1)
    assert frame.schema["age"] == pl.Int8 and frame.schema["treated"] == pl.Int8
    treated = frame.filter(pl.col("treated") == 1)
    comparison = frame.filter(pl.col("treated") == 0)
    assert treated["x"].mean() - comparison["x"].mean() > 0.3  # selection on x
    randomised = study.simulate_cohort(3000, 1, randomised=True)
    assert randomised["y"].equals(frame["y"]) is False  # same persons, other assignment
    assert randomised["x"].equals(frame["x"])


def check(rows, bias_pct, cover_low, cover_high):
    by = {r["method"]: r for r in rows}
    assert by["naive"]["bias_pct"] > 100  # true bias about +190 %
    for label, r in by.items():
        assert r["errors"] == 0, label
        if label == "naive":
            continue
        assert abs(r["bias_pct"]) < bias_pct, label
        assert cover_low <= r["coverage"] <= cover_high, label
        assert 0.55 < r["mean_se"] / r["sd_estimate"] < 1.6, label


def test_fast_study(study):
    # 20 replications of 800 persons: Monte Carlo SE of the bias about 4 % of the effect
    check(study.run(20, 800, seed=40), bias_pct=15, cover_low=0.75, cover_high=1.0)


@pytest.mark.slow
def test_study_200_replications(study):
    # Monte Carlo SE of the bias about 0.8 % of the effect, of the coverage 1.5 points
    check(study.run(200, 2000, seed=1000), bias_pct=5, cover_low=0.9, cover_high=0.99)


@pytest.mark.slow
def test_ipw_ate_coverage_over_1000_replications(study):
    """issue 7's target for ipw ATE at 2000 persons: coverage within 93-97 % (MC SE 0.7 points
    at 1000 replications) and the sandwich SE within 7 % of the spread of the estimates."""
    methods = tuple(m for m in study.METHODS if m[0] == "ipw ATE")
    (row,) = study.run(1000, 2000, seed=1, methods=methods)
    assert row["errors"] == 0 and abs(row["bias_pct"]) < 5
    assert 0.93 <= row["coverage"] <= 0.97
    assert 0.93 < row["mean_se"] / row["sd_estimate"] < 1.07
