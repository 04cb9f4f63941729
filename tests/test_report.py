"""The validator report built from a small known panel (no warehouse, under a second each):
content, schema, hashes, suppression that totals cannot undo, deviations, decision,
generic diagnostics of any method, and the files write_report leaves."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from utfall import payments
from utfall.estimators import base as est_base
from utfall.estimators import get
from utfall.estimators.base import Design, Estimator
from utfall.estimators.result import EffectResult
from utfall.report import (
    build_report,
    dumps,
    render_html,
    report_hash,
    suppress_cells,
    write_report,
    written_line,
)

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "report.schema.json"


def quarters(start: dt.date, end: dt.date) -> list[dt.date]:
    out, d = [], start
    while d <= end:
        out.append(d)
        d = dt.date(d.year + (d.month == 10), (d.month + 2) % 12 + 1, 1)
    return out


def sample_panel(plan, small: dict[str, int] | None = None, seed: int = 7) -> pl.DataFrame:
    """Both outcomes per unit and quarter: treated units 10 % lower in the measurement
    period. `small` sets some units' headcount (to test suppression)."""
    rng = np.random.default_rng(seed)
    small = small or {}
    b0, _ = plan.period("baseline")
    m0, m1 = plan.period("measurement")
    rows = []
    units = [(u, "treated") for u in plan.treated_units] + [
        (u, "comparison") for u in plan.comparison_units
    ]
    for o in plan.outcomes:
        scale = 2.4 if o["id"] == "short_term_sick_days" else 0.06
        for u, g in units:
            n = small.get(u, int(rng.integers(60, 150)))
            level = scale * rng.uniform(0.8, 1.2)
            for q in quarters(b0, m1):
                phase = "measurement" if q >= m0 else "baseline"
                effect = 0.9 if (g == "treated" and phase == "measurement") else 1.0
                value = level * effect * rng.uniform(0.9, 1.1)
                rows.append(
                    {
                        "outcome": o["id"],
                        "unit_id": u,
                        "group": g,
                        "period_start": q,
                        "phase": phase,
                        "employees": n,
                        "numerator": value * n,
                        "denominator": float(n),
                        "value": value,
                    }
                )
    return pl.DataFrame(rows)


def sample_report(plan, small: dict[str, int] | None = None, **kwargs: Any) -> dict[str, Any]:
    """A report as the pipeline builds it, from `sample_panel` and the plan's own method."""
    panel = sample_panel(plan, small)
    cf = plan.counterfactual
    effects = []
    for o in plan.outcomes:
        r = get(cf["method"]).fit(
            panel.filter(pl.col("outcome") == o["id"]),
            Design(
                outcome=o["id"],
                parameters=plan.counterfactual_parameters,
                confidence=float(cf["confidence"]),
                seed=int(cf["seed"]),
                baseline=plan.period("baseline"),
                measurement=plan.period("measurement"),
            ),
        )
        effects.append(json.loads(dumps(r.to_dict())))
    pay = payments.propose(plan, next(e for e in effects if e["outcome"] == "short_term_sick_days"))
    inputs = [
        {"source": "roster", "file": "roster.csv", "sha256": "a" * 64, "bytes": 100, "rows": 12},
        {"source": "sick_leave", "file": "s.csv", "sha256": "b" * 64, "bytes": 90, "rows": 30},
    ]
    recon = [
        {"source": "roster", "delivered": 12, "loaded": 10, "quarantined": 2, "by_rule": {}},
        {"source": "sick_leave", "delivered": 30, "loaded": 30, "quarantined": 0, "by_rule": {}},
    ]
    population = [
        {"group": "treated", "in_roster": 1500, "eligible": 1400, "analysed": 1400},
        {"group": "comparison", "in_roster": 1800, "eligible": 1700, "analysed": 3},
    ]
    args = {"population": population, **kwargs}
    return build_report(plan, inputs, recon, panel, effects, pay, **args)


def with_contract(plan, **contract: Any):
    data = json.loads(json.dumps(plan.data))
    data["contract"].update(contract)
    return replace(plan, data=data)


@pytest.fixture(scope="module")
def validator():
    from jsonschema import Draft202012Validator, FormatChecker

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def assert_valid(validator, report: dict[str, Any]) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(report)]
    assert not errors, errors[:5]


@pytest.fixture(scope="module")
def report(example_plan):
    return sample_report(with_contract(example_plan, agreed_on="2024-11-15"))


def test_report_validates_against_published_schema(report, validator):
    assert_valid(validator, json.loads(dumps(report)))
    broken = json.loads(dumps(report))
    broken["outcomes"][0]["unit_results"]["rows"][0].update(suppressed=True)  # value still shown
    assert list(validator.iter_errors(broken))
    broken = json.loads(dumps(report))
    broken["effects"][0]["diagnostics"]["units"] = []  # per-unit detail must never appear
    assert list(validator.iter_errors(broken))


def test_header_hashes_and_code_version(report, example_plan):
    html = render_html(report)
    digest = hashlib.sha256(dumps(report).encode("utf-8")).hexdigest()
    assert report_hash(report) == f"sha256:{digest}" and f"sha256:{digest}" in html
    assert example_plan.hash in html and "utfall plan show botkyrka_sick_leave.yaml" in html
    assert "sha256sum of the YAML file hashes its bytes" in html
    assert report["code"]["version"] and "utfall " + report["code"]["version"] in html
    commit = report["code"]["git_commit"]
    assert commit is None or (re.fullmatch(r"[0-9a-f]{40}", commit) and commit in html)
    assert "manifest.json" in html  # where the run's time is
    # the PDF's running header names contract and hash (CSS margin boxes)
    assert f'@top-left {{ content: "{example_plan.contract_id}"' in html
    assert f"report {report_hash(report)[:23]}" in html and "counter(pages)" in html


def test_same_content_same_bytes(example_plan):
    plan = with_contract(example_plan, agreed_on="2024-11-15")
    a, b = sample_report(plan), sample_report(plan)
    assert dumps(a) == dumps(b) and render_html(a) == render_html(b)
    # rendering the dict and rendering report.json read back give the same HTML
    assert render_html(json.loads(dumps(a))) == render_html(a)


def test_agreed_text_and_deviations(example_plan, report):
    html = render_html(report)
    assert report["deviations"] == [] and "None: the measurement followed the plan." in html
    text = "Paid 600 000 SEK plus up to 1 400 000 SEK\nin proportion to the reduction."
    late = sample_report(with_contract(example_plan, agreed_on="2025-02-01", agreement_text=text))
    kinds = [d["kind"] for d in late["deviations"]]
    assert kinds == ["plan"] and "after the measurement began (2025-01-01)" in dumps(late)
    html = render_html(late)
    assert "Agreed on: 2025-02-01" in html and "in proportion to the reduction." in html
    data = json.loads(json.dumps(example_plan.data))
    del data["contract"]["agreed_on"]
    undated = sample_report(replace(example_plan, data=data))
    assert "states no agreement date" in undated["deviations"][0]["what"]


def test_deviations_list_missing_units_failed_warnings_and_exclusions(example_plan):
    plan = with_contract(example_plan, agreed_on="2024-11-15")
    cohort = [
        {"unit_id": "HEMTJ-09", "group": "treated", "status": "missing", "employees": 0,
         "note": "did you mean 'HEMTJ-08'?"},
        {"unit_id": "EXTRA-1", "group": None, "status": "not_in_plan", "employees": 3,
         "note": None},
    ]  # fmt: skip
    quality = [
        {"source": "roster", "expectation": "volume_vs_history", "severity": "warn",
         "success": False, "observed": "rows changed by 40 %"},
        {"source": "roster", "expectation": "null_share", "severity": "warn",
         "success": True, "observed": "ok"},
    ]  # fmt: skip
    r = sample_report(plan, cohort=cohort, quality=quality)
    kinds = [d["kind"] for d in r["deviations"]]
    assert kinds == ["unit missing", "units not in plan", "data quality"]
    assert "HEMTJ-09" in r["deviations"][0]["what"] and "unit_check: warn" in dumps(r)
    assert r["cohort_units"][1]["employees"] is None  # 3 < min_cell_size
    html = render_html(r)
    assert "rows changed by 40 %" in html and "EXTRA-1" in html


def test_population_flow(report):
    pop = report["population"]
    assert [s["source"] for s in pop["sources"]] == ["roster", "sick_leave"]
    assert pop["sources"][0] == {
        "source": "roster",
        "delivered": 12,
        "quarantined": 2,
        "valid": 10,
        "balances": True,
    }
    assert pop["groups"][0]["eligible"] == 1400
    assert pop["groups"][1]["analysed"] is None  # 3 persons: under min_cell_size
    assert "Population flow" in render_html(report)


# --- suppression ------------------------------------------------------------------------


def test_suppress_cells_rules():
    assert suppress_cells({"a": 9, "b": 7}, 5) == {"a": None, "b": None}
    # one small cell: the smallest other cell is hidden with it
    assert suppress_cells({"a": 2, "b": 9, "c": 7}, 5) == {
        "a": "primary",
        "b": None,
        "c": "secondary",
    }
    # two small cells whose sum is still small: a third is hidden
    assert suppress_cells({"a": 1, "b": 2, "c": 40, "d": 30}, 5) == {
        "a": "primary",
        "b": "primary",
        "c": None,
        "d": "secondary",
    }
    # two small cells whose sum reaches k: nothing more to hide
    assert suppress_cells({"a": 3, "b": 4, "c": 40}, 5)["c"] is None
    # ties break by name, deterministically
    assert suppress_cells({"x": 1, "b": 8, "a": 8}, 5)["a"] == "secondary"
    # a group of one small unit: hidden, and the total is hidden by the caller
    assert suppress_cells({"a": 2}, 5) == {"a": "primary"}


def attack(rows: list[dict[str, Any]], totals: list[dict[str, Any]]) -> dict[str, tuple]:
    """What an attacker learns about each hidden unit's employees from the published
    group total and the published units (each unit has at least 1): (low, high)."""
    bounds = {}
    for t in totals:
        group = [r for r in rows if r["group"] == t["group"]]
        hidden = [r for r in group if r["suppressed"]]
        if t["employees"] is None or not hidden:
            continue
        rest = t["employees"] - sum(r["employees"] for r in group if not r["suppressed"])
        for r in hidden:
            bounds[r["unit_id"]] = (1, rest - (len(hidden) - 1))
    return bounds


@pytest.mark.parametrize(
    "small",
    [
        {"HEMTJ-03": 2},
        {"HEMTJ-03": 1, "FSK-02": 2},
        {"HEMTJ-03": 4, "SKOLA-01": 3, "ADM-02": 1},
        {"HEMTJ-03": 1, "HEMTJ-04": 1, "HEMTJ-05": 1},
    ],
)
def test_no_suppressed_unit_can_be_recovered_from_totals(example_plan, small, validator):
    r = sample_report(example_plan, small=small)
    assert_valid(validator, json.loads(dumps(r)))
    k = example_plan.min_cell_size
    for o in r["outcomes"]:
        ur = o["unit_results"]
        shown = {u["unit_id"]: u for u in ur["rows"]}
        for unit in small:
            assert shown[unit]["suppressed"] and shown[unit]["employees"] is None
            assert shown[unit]["baseline"] is None and shown[unit]["change"] is None
        for unit, (low, high) in attack(ur["rows"], ur["totals"]).items():
            assert low < high, f"{unit} recoverable"
            if unit in small:  # the attacker cannot even tell it is small
                assert high >= k, f"{unit} bounded below the threshold: {high}"
        # the totals hold every unit: the true group sum, not the published one
        for t in ur["totals"]:
            n_units = len(
                example_plan.treated_units
                if t["group"] == "treated"
                else example_plan.comparison_units
            )
            assert t["units"] == n_units
    html = render_html(r)
    assert html.count(">suppressed<") >= 2 * len(small)
    assert r["disclosure"]["suppressed_units"] >= 2 * len(small)


def test_group_of_only_small_units(example_plan):
    small = {u: 2 for u in example_plan.treated_units}
    r = sample_report(example_plan, small=small)
    ur = r["outcomes"][0]["unit_results"]
    treated = next(t for t in ur["totals"] if t["group"] == "treated")
    assert treated["employees"] == 32 and not treated["suppressed"]  # 16 units x 2
    assert all(u["suppressed"] for u in ur["rows"] if u["group"] == "treated")
    assert all(high == 17 for _, high in attack(ur["rows"], ur["totals"]).values())


# --- generic diagnostics ----------------------------------------------------------------


@pytest.fixture
def fake_method(monkeypatch):
    """A person-level estimator the report has never heard of, registered for one test."""

    def fit(data: pl.DataFrame, design: Design) -> EffectResult:
        raise NotImplementedError

    est = Estimator(
        name="fake_matching",
        data="person",
        estimand="ATT",
        fit=fit,
        published_diagnostics=frozenset({"balance", "caliper", "units"}),
        description="nearest-neighbour matching on the propensity score",
    )
    reg = est_base.registry()
    monkeypatch.setitem(reg, "fake_matching", est)
    return est


def test_any_method_is_rendered_from_its_allow_list(example_plan, fake_method):
    effect = {
        "outcome": "short_term_sick_days",
        "method": "fake_matching",
        "estimate": -0.3,
        "std_error": 0.1,
        "ci_low": -0.5,
        "ci_high": -0.1,
        "confidence": 0.95,
        "n_treated": 300,
        "n_comparison": 900,
        "counterfactual": 2.5,
        "observed": 2.2,
        "relative_estimate": -0.12,
        "relative_ci_low": -0.2,
        "relative_ci_high": -0.04,
        "diagnostics": {
            "balance": [
                {"covariate": "age", "smd_before": 0.31, "smd_after": 0.04},
                {"covariate": "extent", "smd_before": 0.12, "smd_after": 0.01},
            ],
            "caliper": {"width": 0.2, "unmatched_treated": 7},
            "units": [{"unit_id": "HEMTJ-01", "n": 2}],  # allowed, still kept out
            "secret_restricted": "person-level detail",  # not in the allow-list
        },
        "parameters": {},
        "period": "measurement",
        "estimand": "ATT",
        "warnings": ["7 treated persons had no match within the caliper"],
    }
    plan = with_contract(example_plan, agreed_on="2024-11-15")
    data = json.loads(json.dumps(plan.data))
    data["counterfactual"] = {**data["counterfactual"], "method": "fake_matching"}
    data["counterfactual"]["parameters"] = {}
    plan = replace(plan, data=data)
    pay = payments.propose(plan, effect)
    r = build_report(plan, [], [], pl.DataFrame(), [effect], pay)
    d = r["effects"][0]["diagnostics"]
    assert set(d) == {"balance", "caliper"}
    assert r["outcomes"][0]["series"] == [] and r["outcomes"][0]["unit_results"]["rows"] == []
    html = render_html(r)
    assert "smd after" in html and "0.0400" in html and "unmatched treated" in html
    assert "7 treated persons had no match within the caliper" in html
    assert "secret_restricted" not in html and "person-level detail" not in html
    assert "No plain-language summary has been written for this method" in html
    assert "nearest-neighbour matching on the propensity score" in html
    assert "parallel trends" not in html.lower()  # nothing of another method's text


def test_did_diagnostics_rendered_generically(report):
    html = render_html(report)
    e = report["effects"][0]
    assert "units" not in e["diagnostics"] and "period_means" not in e["diagnostics"]
    assert "event study" in html and 'aria-label="event_study.coefficients' in html
    assert "scale sensitivity" in html and "pre trend" in html


# --- decision and files -----------------------------------------------------------------


def test_decision_pending_then_rendered(report, example_plan, tmp_path, validator):
    assert report["decision"] == {"status": "pending", "details": {}}
    assert "has not yet approved or rejected" in render_html(report)
    decision = {
        "decision": "approved",
        "by": "RISE validator",
        "key_fingerprint": "ed25519:0123abcd",
        "at": "2026-02-01T10:00:00+00:00",
        "comment": "checked against the replication package",
    }
    html = render_html(report, decision=decision)
    assert "<strong>approved</strong>" in html and "ed25519:0123abcd" in html
    assert "has not yet approved" not in html
    decided = sample_report(with_contract(example_plan, agreed_on="2024-11-15"), decision=decision)
    assert decided["decision"]["status"] == "approved"
    assert_valid(validator, json.loads(dumps(decided)))
    # decision.json beside the report is rendered by write_report
    (tmp_path / "decision.json").write_text(json.dumps(decision), encoding="utf-8")
    paths = write_report(report, tmp_path, run_id="r1")
    assert "ed25519:0123abcd" in paths["report.html"].read_text(encoding="utf-8")


def test_write_report_files_and_pdf_notes(report, tmp_path, monkeypatch):
    monkeypatch.setenv("UTFALL_CHROMIUM", "off")
    paths = write_report(report, tmp_path / "a", run_id="r1")
    assert set(paths) == {"report.json", "report.html", "manifest.json"}
    manifest = json.loads(paths["manifest.json"].read_text(encoding="utf-8"))
    assert manifest["report_hash"] == report_hash(report)
    assert (
        manifest["report_hash"]
        == "sha256:" + hashlib.sha256(paths["report.json"].read_bytes()).hexdigest()
    )
    assert set(manifest["files"]) == {"report.json", "report.html"}
    assert manifest["pdf"] == {
        "file": "report.pdf",
        "written": False,
        "reason": "skipped (UTFALL_CHROMIUM=off)",
    }
    assert "no report.pdf: skipped (UTFALL_CHROMIUM=off)" in written_line(paths)
    monkeypatch.setenv("UTFALL_CHROMIUM", str(tmp_path / "no-such-chromium"))
    paths = write_report(report, tmp_path / "b", run_id="r1")
    assert "chromium not found" in written_line(paths)
    assert not (tmp_path / "b" / "report.pdf").exists()
    # a Chromium that fails leaves no PDF and says why
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\necho 'cannot open display' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("UTFALL_CHROMIUM", str(fake))
    paths = write_report(report, tmp_path / "c", run_id="r1")
    note = json.loads(paths["manifest.json"].read_text())["pdf"]
    assert not note["written"] and "exited 3: cannot open display" in note["reason"]
    assert not list((tmp_path / "c").glob("report.pdf*"))


def test_html_fetches_nothing(report):
    html = render_html(report)
    assert not re.search(r"<(script|link|img|iframe)\b", html)
    urls = set(re.findall(r"https?://[^\s\"'<>]+", html))
    assert urls <= {"http://www.w3.org/2000/svg"}


def test_population_counts_from_the_warehouse(example_plan):
    """Persons per group: in the plan's units, eligible (extent and dates), analysed."""
    import duckdb

    from utfall.report import population_counts
    from utfall.warehouse.runs import Run

    con = duckdb.connect(":memory:")
    con.sql("CREATE SCHEMA work")
    con.sql(
        "CREATE TABLE work.staging_employee_roster (contract_id VARCHAR, run_id VARCHAR, "
        "source VARCHAR, person_id VARCHAR, unit_id VARCHAR, employment_extent BIGINT, "
        "employed_from DATE, employed_to DATE)"
    )
    con.sql(
        "CREATE TABLE work.outcome_panel (contract_id VARCHAR, run_id VARCHAR, unit_id VARCHAR)"
    )
    c = example_plan.contract_id
    rows = [
        (c, "r", "roster", "p1", "HEMTJ-01", 100, "2020-01-01", None),  # counted throughout
        (c, "r", "roster", "p2", "HEMTJ-01", 20, "2022-01-01", None),  # extent under 25
        (c, "r", "roster", "p3", "HEMTJ-02", 100, "2019-01-01", "2021-12-31"),  # before
        (c, "r", "roster", "p4", "HEMTJ-02", 50, "2026-01-01", None),  # after
        (c, "r", "roster", "p5", "FSK-01", 100, "2023-01-01", None),  # unit not in panel
        (c, "r", "roster", "p6", "HEMTJ-01", 100, "2022-01-01", "2023-06-30"),  # moved:
        (c, "r", "roster", "p6", "SKOLA-01", 100, "2023-07-01", None),  # in both groups
        (c, "r", "roster", "p7", "OTHER-9", 100, "2022-01-01", None),  # not a plan unit
        (c, "r", "other_source", "p8", "HEMTJ-01", 100, "2022-01-01", None),
        (c, "old", "roster", "p9", "HEMTJ-01", 100, "2022-01-01", None),  # another run
        ("other", "r", "roster", "p10", "HEMTJ-01", 100, "2022-01-01", None),
    ]
    con.executemany("INSERT INTO work.staging_employee_roster VALUES (?,?,?,?,?,?,?,?)", rows)
    con.executemany(
        "INSERT INTO work.outcome_panel VALUES (?,?,?)",
        [(c, "r", "HEMTJ-01"), (c, "r", "HEMTJ-02"), (c, "r", "SKOLA-01"), (c, "old", "FSK-01")],
    )
    got = population_counts(con, example_plan, Run(run_id="r", contract_id=c))
    assert got == [
        {"group": "treated", "in_roster": 6, "eligible": 3, "analysed": 2},
        {"group": "comparison", "in_roster": 1, "eligible": 1, "analysed": 1},
    ]


def test_payment_steps_recompute_the_total(report):
    from decimal import Decimal

    steps = report["payment"]["steps"]
    lines = report["payment"]["lines"]
    assert len(steps) == 3 + len(lines) + 1
    for line, step in zip(lines, steps[3:-1], strict=True):
        assert step.endswith(f"= {line['amount']} SEK.")
        assert Decimal(line["achievement"]) * Decimal(line["max_amount"]) == Decimal(line["amount"])
    total = sum(Decimal(line["amount"]) for line in lines)
    assert steps[-1].startswith("Total: ") and f"= {report['payment']['total']} SEK" in steps[-1]
    assert total == Decimal(report["payment"]["total"])
    html = render_html(report)
    assert all(s.replace("'", "&#39;")[:40] in html for s in steps)


def test_rate_card_claims_stay_out_of_the_report():
    """A rate card's claims name persons by pseudonym: the report shows counts by status."""
    from utfall.report import public_payment

    payment = {
        "total": "100.00",
        "lines": [
            {
                "rule": 0,
                "amount": "100.00",
                "claims": [
                    {"row": 0, "person_id": "p-aaaa", "status": "paid", "amount": "100.00"},
                    {"row": 1, "person_id": "p-bbbb", "status": "capped_contract"},
                    {"row": 2, "person_id": "p-cccc", "status": "paid", "amount": "0.00"},
                ],
            },
            {"rule": 1, "amount": "0.00"},
        ],
    }
    shown = public_payment(payment)
    assert "p-aaaa" not in json.dumps(shown)
    assert shown["lines"][0]["claims_by_status"] == {"capped_contract": 1, "paid": 2}
    assert shown["lines"][1] == {"rule": 1, "amount": "0.00"}
    assert payment["lines"][0]["claims"][0]["person_id"] == "p-aaaa"  # the input is untouched
