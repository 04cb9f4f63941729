"""staggered (Callaway-Sant'Anna): the did package's published mpdta numbers, moderndid's
implementation to 1e-8, known truth under heterogeneous staggered effects, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from published_panel_data import make_panel

from utfall.estimators import registry
from utfall.estimators.base import Design, EstimationError
from utfall.estimators.staggered import staggered
from utfall.estimators.twfe import twfe


def _fit(frame, control="never_treated", weight="equal"):
    return staggered(frame, Design(outcome="y", parameters={"control": control, "weight": weight}))


@pytest.fixture(scope="module")
def mpdta():
    import published_panel_data as pub

    return pub.mpdta()


# Published: Callaway and Sant'Anna's did package, vignette "Getting Started with the did
# Package" (mpdta, att_gt(lemp, ..., control_group = "nevertreated")): ATT(g,t) to the 4
# printed decimals; aggte simple -0.0400, group -0.0310, dynamic -0.0772.
PUBLISHED_ATT_GT = {
    (2004, 2004): -0.0105, (2004, 2005): -0.0704, (2004, 2006): -0.1373, (2004, 2007): -0.1008,
    (2006, 2004): 0.0065, (2006, 2005): -0.0028, (2006, 2006): -0.0046, (2006, 2007): -0.0412,
    (2007, 2004): 0.0305, (2007, 2005): -0.0027, (2007, 2006): -0.0311, (2007, 2007): -0.0261,
}  # fmt: skip


def test_mpdta_published_did_vignette(mpdta):
    r = _fit(mpdta)
    got = {(int(c["cohort"][:4]), int(c["period"][:4])): c["att"]
           for c in r.diagnostics["group_time"]}  # fmt: skip
    assert set(got) == set(PUBLISHED_ATT_GT)
    for key, value in PUBLISHED_ATT_GT.items():
        assert got[key] == pytest.approx(value, abs=5e-5), key
    assert r.estimate == pytest.approx(-0.0400, abs=5e-5)
    assert r.diagnostics["group_aggregate"]["estimate"] == pytest.approx(-0.0310, abs=5e-5)
    assert r.diagnostics["dynamic_aggregate"]["estimate"] == pytest.approx(-0.0772, abs=5e-5)
    assert r.n_treated == 191 and r.n_comparison == 309
    assert r.ci_low < r.estimate < r.ci_high < 0


@pytest.mark.parametrize(
    ("control", "md_control"),
    [("never_treated", "nevertreated"), ("not_yet_treated", "notyettreated")],
)
def test_agrees_with_moderndid_analytic(mpdta, control, md_control):
    """Reference: moderndid 0.2.0 (a Python port of did), est_method "reg" without covariates
    = unconditional DiD, analytic influence-function SE. Tolerance 1e-8."""
    md = pytest.importorskip("moderndid")
    d = md.load_mpdta()
    ref = md.att_gt(
        d,
        yname="lemp",
        tname="year",
        idname="countyreal",
        gname="first.treat",
        control_group=md_control,
        boot=False,
        cband=False,
        est_method="reg",
    )
    r = _fit(mpdta, control)
    cells = r.diagnostics["group_time"]
    np.testing.assert_allclose([c["att"] for c in cells], ref.att_gt, atol=1e-8)
    np.testing.assert_allclose([c["std_error"] for c in cells], ref.se_gt, rtol=1e-6)
    for kind, mine in (
        ("simple", {"estimate": r.estimate, "std_error": r.std_error}),
        ("group", r.diagnostics["group_aggregate"]),
        ("dynamic", r.diagnostics["dynamic_aggregate"]),
    ):
        agg = md.aggte(ref, type=kind, cband=False, boot=False)
        assert mine["estimate"] == pytest.approx(agg.overall_att, abs=1e-8), kind
        assert mine["std_error"] == pytest.approx(agg.overall_se, rel=1e-6), kind


def _heterogeneous(seed, n_per_cohort=15, noise=0.3):
    """Cohorts at periods 2, 4, 6 plus never treated; effect grows with exposure and differs
    by cohort: effect(g, t) = (1 + g) * 0.2 * (t - g + 1) for t >= g."""
    rng = np.random.default_rng(seed)
    cohorts = [2] * n_per_cohort + [4] * n_per_cohort + [6] * n_per_cohort + [None] * 20
    n_t = 9
    y = rng.normal(10, 1, (len(cohorts), 1)) + rng.normal(0, 1, (1, n_t))
    y = y + rng.normal(0, noise, y.shape)
    truth_cells = []
    for u, g in enumerate(cohorts):
        if g is None:
            continue
        for t in range(g, n_t):
            eff = (1 + g) * 0.2 * (t - g + 1)
            y[u, t] += eff
            truth_cells.append(eff)
    return make_panel(y, cohorts, measurement_from=2), float(np.mean(truth_cells))


def test_recovers_heterogeneous_staggered_effect_where_twfe_does_not():
    frame, truth = _heterogeneous(0, noise=0.0)
    r = _fit(frame)
    assert r.estimate == pytest.approx(truth, abs=1e-9)  # noise-free: exact
    t = twfe(frame, Design(outcome="y", parameters={"weight": "equal"}))
    assert abs(t.estimate - truth) > 0.1 * truth  # TWFE is biased here
    frame, truth = _heterogeneous(1)
    r = _fit(frame, "not_yet_treated")
    assert r.ci_low < truth < r.ci_high


def test_exposure_weights_equal_equal_weights_when_denominators_equal(mpdta):
    a = _fit(mpdta, weight="exposure")
    b = _fit(mpdta, weight="equal")
    assert a.estimate == pytest.approx(b.estimate, abs=1e-12)


def test_refusals():
    y = np.random.default_rng(3).normal(size=(5, 6))
    with pytest.raises(EstimationError, match="synthetic_control"):
        _fit(make_panel(y, [3, None, None, None, None]))
    with pytest.raises(EstimationError, match="not_yet_treated"):
        _fit(make_panel(y, [2, 2, 3, 4, 4]))
    # not-yet-treated works there, and the last cohort's late cells have no control: warned
    r = _fit(make_panel(y, [2, 2, 3, 4, 4]), "not_yet_treated")
    assert any("no control units" in w for w in r.warnings)


def test_unbalanced_and_first_period_units_are_left_out_with_warnings():
    y = np.random.default_rng(4).normal(size=(8, 6))
    frame = make_panel(y, [0, 2, 2, 3, 3, None, None, None])
    frame = frame.filter(
        ~((frame["unit_id"] == "u007") & (frame["period_start"].dt.year() == 2021))
    )
    r = _fit(frame)
    assert r.diagnostics["n_excluded_units"] == 2
    assert any("left out" in w for w in r.warnings) and len(r.warnings) >= 2


def test_registered():
    assert registry()["staggered"].data == "unit_panel"
