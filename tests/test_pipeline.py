"""The whole measurement on simulated data: the effect is found, re-runs are identical."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal

import pytest

from tests.conftest import empty_warehouse_file
from utfall import warehouse
from utfall.pipeline import run


@pytest.fixture(scope="module")
def runs(example_plan, deliveries, demo_warehouse, tmp_path_factory):
    """The example measured twice, into two new warehouses and report folders: the first
    is a copy of the session's measured example (tests/conftest.py, run into a missing
    file), the second is run into a copy of the empty warehouse."""
    from tests.conftest import TEST_KEY

    root = tmp_path_factory.mktemp("run0")
    shutil.copy(demo_warehouse.warehouse, root / "w.duckdb")
    shutil.copytree(demo_warehouse.reports, root / "report")
    out = [(root, demo_warehouse.result)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UTFALL_PSEUDONYM_KEY", TEST_KEY)
        for i in range(1, 2):
            root = tmp_path_factory.mktemp(f"run{i}")
            result = run(
                example_plan,
                empty_warehouse_file(root / "w.duckdb"),
                deliveries,
                root / "report",
                progress=lambda _msg: None,
            )
            out.append((root, result))
    return out


def test_estimate_covers_true_effect(runs, truth):
    _, result = runs[0]
    effect = next(e for e in result.effects if e.outcome == "short_term_sick_days")
    # The estimand: the relative reduction the thinning implies for these spells (spells
    # begun before the start carry untreated days into the measurement period).
    true_rel = -truth["realized"]["expected_relative_reduction_given_spells"]
    assert effect.relative_ci_low < true_rel < effect.relative_ci_high
    assert effect.relative_ci_low < -truth["effect"] < effect.relative_ci_high
    assert effect.relative_estimate == pytest.approx(true_rel, abs=0.05)
    assert effect.n_treated == 16 and effect.n_comparison == 18


def test_report_content(runs, example_plan, truth):
    root, _ = runs[0]
    report = json.loads((root / "report" / "report.json").read_text(encoding="utf-8"))
    assert report["plan"]["hash"] == example_plan.hash
    from jsonschema import Draft202012Validator, FormatChecker

    from tests.test_report import SCHEMA  # the published schema holds for a real run too

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    errors = list(Draft202012Validator(schema, format_checker=FormatChecker()).iter_errors(report))
    assert not errors, [e.message for e in errors[:3]]
    pop = {g["group"]: g for g in report["population"]["groups"]}
    assert 0 < pop["treated"]["analysed"] <= pop["treated"]["eligible"]
    assert {i["file"] for i in report["inputs"]} == {"roster.csv", "sick_leave.csv"}
    assert all(len(i["sha256"]) == 64 for i in report["inputs"])
    for r in report["reconciliation"]:
        assert r["delivered"] == r["loaded"] + r["quarantined"]
    effect = report["effects"][0]
    for key in (
        "outcome",
        "method",
        "estimate",
        "std_error",
        "ci_low",
        "ci_high",
        "confidence",
        "n_treated",
        "n_comparison",
    ):
        assert key in effect
    assert effect["ci_low"] < effect["estimate"] < effect["ci_high"]
    assert report["payment"]["status"] == "proposed"
    series = report["outcomes"][0]["series"]
    assert len(series) == 2 * 16 and not any(r["suppressed"] for r in series)
    html = (root / "report" / "report.html").read_text(encoding="utf-8")
    total = f"{Decimal(report['payment']['total']):,}".replace(",", "\u202f")  # 1 996 500.00
    assert "<svg" in html and example_plan.hash in html and total in html
    # The payment range: the amount at both ends of the interval and at the point estimate.
    payment = report["payment"]
    assert [p["at"] for p in payment["range"]] == [
        "least_favourable",
        "point_estimate",
        "most_favourable",
    ]
    low, point, high = (Decimal(p["total"]) for p in payment["range"])
    assert low <= point <= high and payment["basis"] == example_plan.payment["basis"]
    assert "Payment range" in html and payment["decision"]["reason"] in html
    manifest = json.loads((root / "report" / "manifest.json").read_text(encoding="utf-8"))
    assert set(manifest["files"]) == {"report.json", "report.html"}
    # The report states the definition measured, defaults included.
    assert report["outcomes"][0]["parameters"] == {
        "max_spell_day": 14,
        "period_rule": "statutory",
        "reillness_days": 5,
    }
    assert "Days 1–14 of each sick period" in html and "sjuklönelagen" in html


def test_same_inputs_same_report_bytes(runs):
    (a, _), (b, _) = runs
    for name in ("report.json", "report.html"):
        assert (a / "report" / name).read_bytes() == (b / "report" / name).read_bytes()
    ma = json.loads((a / "report" / "manifest.json").read_text())
    mb = json.loads((b / "report" / "manifest.json").read_text())
    assert ma["files"] == mb["files"]


def test_rerun_into_same_warehouse_is_idempotent(runs, example_plan, deliveries):
    root, _ = runs[0]
    before = (root / "report" / "report.json").read_bytes()
    run(example_plan, root / "w.duckdb", deliveries, root / "report", progress=lambda _m: None)
    assert (root / "report" / "report.json").read_bytes() == before
    con = warehouse.connect(root / "w.duckdb", read_only=True)
    try:
        assert warehouse.scalar(con, "SELECT count(*) FROM raw.deliveries") == 2
        assert warehouse.scalar(con, "SELECT count(*) FROM marts.effects") == 2
    finally:
        con.close()


def test_small_cells_are_suppressed(example_plan, deliveries, tmp_path):
    from dataclasses import replace

    data = json.loads(json.dumps(example_plan.data))
    data["disclosure"]["min_cell_size"] = 10_000
    plan = replace(example_plan, data=data)
    db = empty_warehouse_file(tmp_path / "w.duckdb")
    result = run(plan, db, deliveries, tmp_path / "r", progress=lambda _m: None)
    report = json.loads(result.report_paths["report.json"].read_text())
    series = report["outcomes"][0]["series"]
    assert all(r["suppressed"] and r["value"] is None and r["employees"] is None for r in series)
    # Per-unit and per-quarter diagnostics would bypass suppression: not in the report.
    assert not {"units", "period_means"} & set(report["effects"][0]["diagnostics"])
    assert report["disclosure"]["suppressed_cells"] == sum(
        len(o["series"]) for o in report["outcomes"]
    )


@pytest.mark.slow
def test_pipeline_coverage_over_simulated_contracts(example_plan, tmp_path):
    """The whole chain (simulator -> ingest -> validation -> panel -> DiD) on 40 simulated
    contracts: the 95 % interval of the relative effect covers the true effect about 95 % of
    the time. With 40 draws, 3 binomial standard deviations below 38 is 33.9, so >= 34."""
    from utfall.cli import simulate_deliveries

    covered = []
    for seed in range(40):
        d = tmp_path / f"d{seed}"
        truth = simulate_deliveries(
            example_plan.path, d, employees=2000, effect=0.12, defect_rate=0.01, seed=1000 + seed
        )
        result = run(
            example_plan,
            tmp_path / f"w{seed}.duckdb",
            d,
            tmp_path / f"r{seed}",
            progress=lambda _m: None,
        )
        effect = next(e for e in result.effects if e.outcome == "short_term_sick_days")
        true_rel = -truth["realized"]["expected_relative_reduction_given_spells"]
        covered.append(effect.relative_ci_low < true_rel < effect.relative_ci_high)
    print(f"pipeline coverage: {sum(covered)}/{len(covered)}")
    assert sum(covered) >= 34


def test_report_shows_event_study_and_inference(runs):
    from utfall.report import render_html

    root, _ = runs[0]
    report = json.loads((root / "report" / "report.json").read_text(encoding="utf-8"))
    effect = report["effects"][0]
    diagnostics = effect["diagnostics"]
    assert "units" not in diagnostics and "period_means" not in diagnostics
    es = diagnostics["event_study"]
    assert len(es["coefficients"]) == 16 and es["pre_test"]["q"] == 11
    assert es["pre_test"]["p_value"] is not None
    assert diagnostics["inference"] == "analytic" and diagnostics["randomization"] is None
    html = (root / "report" / "report.html").read_text(encoding="utf-8")
    # Diagnostics are rendered generically from the estimator's allow-list (tests/test_report.py)
    assert 'aria-label="event_study.coefficients' in html and "pre test" in html
    assert "treated units: the interval rests on very few" not in html  # 16 treated units
    # the example plan assumes parallel trends in ratios; the absolute scale is the sensitivity
    assert diagnostics["scale"] == "relative"
    assert diagnostics["scale_sensitivity"]["scale"] == "absolute"
    assert "scale sensitivity" in html
    # few treated units with analytic inference: the report warns (generic, in report.py)
    from utfall.report import public_effect

    few = public_effect({**effect, "n_treated": 4})
    assert "Only 4 treated units: the interval rests on very few clusters" in few["warnings"][-1]
    few = public_effect(
        {**effect, "n_treated": 4, "diagnostics": {**diagnostics, "inference": "randomization"}}
    )
    assert not any("Only 4 treated" in w for w in few["warnings"])
    assert render_html(report).count("<svg") >= 3
