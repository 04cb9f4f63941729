"""The panel simulation study (scripts/study_panel.py): a fast version with loose bounds that
still fail on a biased or mis-calibrated method, and the full 500-replicate run (slow)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "study_panel.py"


def _study():
    spec = importlib.util.spec_from_file_location("study_panel", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _by_method(rows):
    return {(r["scenario"], r["method"]): r for r in rows}


def test_fast_study_cs_unbiased_twfe_biased_sc_and_series_calibrated():
    study = _study()
    rows = _by_method(study.run_study(reps=25, seed=11))
    cs = rows[("staggered", "staggered (never_treated)")]
    assert abs(cs["bias_pct"]) < 10 and cs["coverage"] >= 0.8
    nyt = rows[("staggered", "staggered (not_yet_treated)")]
    assert abs(nyt["bias_pct"]) < 10 and nyt["coverage"] >= 0.8
    tw = rows[("staggered", "twfe")]
    assert tw["bias_pct"] > 25  # plain TWFE shrinks the effect towards zero here
    sc = rows[("synthetic_control", "synthetic_control")]
    assert abs(sc["bias_pct"]) < 10 and sc["coverage"] >= 0.8
    hist = rows[("historical", "historical")]
    assert abs(hist["bias_pct"]) < 15 and hist["coverage"] >= 0.75
    for key in (("its", "its"), ("its_iid", "its")):
        assert abs(rows[key]["bias_pct"]) < 10 and rows[key]["coverage"] >= 0.8
        assert abs(rows[(key[0], "its (newey_west)")]["bias_pct"]) < 10
    assert all(r["failed"] == 0 for r in rows.values())


def test_study_is_reproducible():
    study = _study()
    case = [study.CASES[0]]
    assert study.run_study(3, 5, case) == study.run_study(3, 5, case)


@pytest.mark.slow
def test_full_study_meets_targets():
    """500 replicates: bias < 5 % of the effect and 95 % coverage within 93-97 % where the
    assumptions hold (ITS with its default AR(1) REML variance included); TWFE visibly biased.
    ITS with Newey-West HAC is held to bias only (its.py docstring: it under-covers in short
    series)."""
    rows = _by_method(_study().run_study(reps=500, seed=20261128))
    for key in (
        ("staggered", "staggered (never_treated)"),
        ("staggered", "staggered (not_yet_treated)"),
        ("synthetic_control", "synthetic_control"),
        ("historical", "historical"),
        ("its", "its"),
        ("its_iid", "its"),
    ):
        assert abs(rows[key]["bias_pct"]) < 5, key
        assert 0.93 <= rows[key]["coverage"] <= 0.97, key
    assert rows[("staggered", "twfe")]["bias_pct"] > 25
    for scenario in ("its", "its_iid"):
        assert abs(rows[(scenario, "its (newey_west)")]["bias_pct"]) < 5
