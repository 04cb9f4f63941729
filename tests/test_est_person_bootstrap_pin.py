"""The aipw person bootstrap pinned on a small case: the figures the code gave (seed 11, 200
replications, 3000 persons of scripts/bench_person.py's cohort) before its bootstrap was
optimised for speed, so an optimisation cannot change what it computes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from bench_person import FORMULA, cohort  # noqa: E402

from utfall.estimators.base import Design, get  # noqa: E402

#: estimand, covariates -> estimate, SE, CI, relative CI
PINNED = {
    ("ATT", ""): (
        0.9973455586358604,
        0.04436695368947977,
        (0.9203821533936413, 1.090281656440231),
        (0.059821331602601106, 0.07104939078386359),
    ),
    ("ATT", "age + x"): (
        0.997022778438108,
        0.04437694189666101,
        (0.9205239284198871, 1.0895905787971674),
        (0.05982810199990034, 0.07102340583821942),
    ),
    ("ATE", ""): (
        0.9879948773147049,
        0.04529004073647614,
        (0.9088487704722916, 1.0913505343945964),
        (0.06362547976583552, 0.07700773636510606),
    ),
    ("ATE", "age + x"): (
        0.9870821575877589,
        0.04487434641826937,
        (0.9081546365781021, 1.0888180400504528),
        (0.06357594350523955, 0.076827119460098),
    ),
}


@pytest.mark.parametrize(("estimand", "covariates"), list(PINNED))
def test_aipw_bootstrap_is_unchanged(estimand, covariates):
    params = {
        "propensity": FORMULA,
        "covariates": covariates,
        "estimand": estimand,
        "inference": "bootstrap",
        "replications": 200,
    }
    r = get("aipw").fit(cohort(3000, 7), Design("y", params, seed=11))
    est, se, ci, rel_ci = PINNED[(estimand, covariates)]
    got = (r.estimate, r.std_error, r.ci_low, r.ci_high, r.relative_ci_low, r.relative_ci_high)
    assert got == pytest.approx((est, se, *ci, *rel_ci), rel=1e-10, abs=0)
