"""Eligibility as a plan key on the participants source, the flow of persons into the
estimate (enrolled = eligible + excluded, eligible = analysed + dropped, per arm), its small
cells suppressed in the report, hostile plans refused with the key named, and the health
bond measured end to end with the flow reconciling and `utfall verify` recomputing it."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from utfall.domains.person import person_flow
from utfall.paths import EXAMPLE_PLANS
from utfall.plan import PlanError, load_plan
from utfall.report import population_flow

HEALTH = EXAMPLE_PLANS / "health_bond.yaml"
REPORT_SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "report.schema.json"


def _health() -> dict:
    return copy.deepcopy(yaml.safe_load(HEALTH.read_text(encoding="utf-8")))


def _problems(tmp_path: Path, data: dict) -> list[tuple[str, str]]:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    with pytest.raises(PlanError) as err:
        load_plan(path)
    return err.value.problems


def _participants(data: dict) -> dict:
    return next(s for s in data["sources"] if s["kind"] == "participants")


def test_the_health_bond_plan_states_its_eligibility():
    source = load_plan(HEALTH).source("deltagare")
    assert source["eligibility"] == {
        "age": {"min": 50, "max": 60},
        "baseline_hba1c": {"min": 42, "max": 47},
    }


def test_eligibility_on_an_unknown_column_is_named(tmp_path):
    data = _health()
    _participants(data)["eligibility"] = {"agee": {"min": 50}, "bmi": {"max": 30}}
    problems = _problems(tmp_path, data)
    assert (
        "sources[0].eligibility.agee",
        "'agee' is not a numeric column of the source; did you mean 'age'? "
        "(eligibility may name: age, baseline_hba1c)",
    ) in problems
    assert any(k == "sources[0].eligibility.bmi" for k, _ in problems)


def test_eligibility_with_min_above_max_or_on_a_category_is_refused(tmp_path):
    data = _health()
    _participants(data)["eligibility"] = {"age": {"min": 61, "max": 60}, "clinic": {"min": 1}}
    problems = dict(_problems(tmp_path, data))
    assert problems["sources[0].eligibility.age"] == "min 61 is above max 60: nobody is eligible"
    assert problems["sources[0].eligibility.clinic"].startswith("'clinic' is a categorical")


def test_eligibility_shapes_are_checked_by_the_schema(tmp_path):
    data = _health()
    _participants(data)["eligibility"] = {"age": {"minimum": 50}}
    assert any("unknown key 'minimum'" in p for _, p in _problems(tmp_path, data))
    _participants(data)["eligibility"] = {"age": {}}
    assert any(k == "sources[0].eligibility.age" for k, _ in _problems(tmp_path, data))


def test_keys_of_one_kind_are_refused_on_another(tmp_path):
    data = _health()
    _participants(data)["mono_s"] = "quarantine"
    labs = next(s for s in data["sources"] if s["kind"] == "lab_results")
    labs["eligibility"] = {"age": {"min": 50}}
    labs["mono_s"] = "ngsp"
    problems = _problems(tmp_path, data)
    keys = {k for k, _ in problems}
    assert "sources[1].mono_s" in keys  # not an allowed value
    data = _health()
    _participants(data)["mono_s"] = "quarantine"
    labs = next(s for s in data["sources"] if s["kind"] == "lab_results")
    labs["eligibility"] = {"age": {"min": 50}}
    problems = dict(_problems(tmp_path, data))
    assert problems["sources[0].mono_s"] == "only a source of kind lab_results takes mono_s"
    assert problems["sources[1].eligibility"] == (
        "only a source of kind participants takes eligibility"
    )


D = dt.date


def _frames():
    people = pl.DataFrame(
        {
            "person_id": [f"p{i}" for i in range(10)],
            "treated": [1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
            "age": [50, 60, 49, 61, 55, 55, 55, 70, 55, 55],
            "clinic": ["a", "a", "a", "a", None, "b", "b", "b", "b", None],
            # p3 fails both age and baseline: counted under age (the first criterion)
            "baseline_hba1c": [42.0, 47.0, 44.0, 48.0, 44.0, 41.9, None, 44.0, 44.0, 44.0],
        }
    )
    outcomes = pl.DataFrame(
        {
            "person_id": [f"p{i}" for i in range(10)],
            "y": [1.0, None, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, None, 1.0],
        }
    )
    return people, outcomes


CRITERIA = {"age": {"min": 50, "max": 60}, "baseline_hba1c": {"min": 42, "max": 47}}


def test_the_flow_counts_every_person_once_per_arm():
    people, outcomes = _frames()
    frame, flow = person_flow(
        outcomes,
        people,
        "y",
        numeric=("age", "baseline_hba1c"),
        categorical=("clinic",),
        eligibility=CRITERIA,
    )
    treated, comparison = flow["arms"]
    # treated: p0 in (bounds included), p1 no outcome, p2 age 49, p3 age 61 (and 48),
    # p4 no clinic
    assert treated == {
        "group": "treated",
        "enrolled": 5,
        "excluded": [
            {"criterion": "age", "persons": 2},
            {"criterion": "baseline_hba1c", "persons": 0},
        ],
        "eligible": 3,
        "dropped": [
            {"reason": "no_outcome", "column": None, "persons": 1},
            {"reason": "missing_covariate", "column": "clinic", "persons": 1},
        ],
        "analysed": 1,
    }
    # comparison: p5 baseline 41.9, p6 no baseline (not shown eligible), p7 age 70,
    # p8 no outcome, p9 no clinic
    assert comparison["excluded"] == [
        {"criterion": "age", "persons": 1},
        {"criterion": "baseline_hba1c", "persons": 2},
    ]
    assert (comparison["eligible"], comparison["analysed"]) == (2, 0)
    assert [d["persons"] for d in comparison["dropped"]] == [1, 1]
    assert frame["person_id"].to_list() == ["p0"]
    for arm in flow["arms"]:
        assert arm["enrolled"] == arm["eligible"] + sum(e["persons"] for e in arm["excluded"])
        assert arm["eligible"] == arm["analysed"] + sum(d["persons"] for d in arm["dropped"])


def test_without_eligibility_the_frame_is_the_old_one():
    from utfall.domains.person import person_frame

    people, outcomes = _frames()
    frame, dropped = person_frame(outcomes, people, "y", numeric=("age",), categorical=("clinic",))
    _, flow = person_flow(outcomes, people, "y", numeric=("age",), categorical=("clinic",))
    assert dropped == 4 and frame.height == 6  # p1, p8 no outcome; p4, p9 no clinic
    assert all(a["excluded"] == [] for a in flow["arms"])


def test_small_cells_of_the_flow_are_suppressed():
    people, outcomes = _frames()
    _, flow = person_flow(
        outcomes, people, "y", numeric=("age", "baseline_hba1c"), eligibility=CRITERIA
    )
    shown = population_flow([], None, 2, {"outcomes": [{"outcome": "y", **flow}]})
    treated = shown["outcomes"][0]["arms"][0]
    assert treated["analysed"] == 2 and treated["dropped"][0]["persons"] is None  # 1 < 2
    # complementary: eligible = analysed + dropped would give the 1 away, so eligible goes;
    # enrolled = eligible + excluded would then give eligible, so the nonzero exclusion goes
    assert treated["eligible"] is None and treated["excluded"][0]["persons"] is None
    assert treated["enrolled"] == 5
    assert treated["excluded"][1]["persons"] == 0  # zero is no person: shown
    assert "conversions" not in shown


def test_health_bond_end_to_end_the_flow_reconciles_and_verifies(tmp_path):
    from utfall import cli
    from utfall.pipeline import run
    from utfall.replication import verify_package

    deliveries = tmp_path / "deliveries"
    truth = cli.simulate_deliveries(HEALTH, deliveries, 3000, 0.0, 0.0, None)
    assert truth["n_ineligible"] > 0
    run(load_plan(HEALTH), tmp_path / "w.duckdb", deliveries, tmp_path / "report")
    report = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))
    from jsonschema import Draft202012Validator

    schema = json.loads(REPORT_SCHEMA.read_text(encoding="utf-8"))
    assert [e.message for e in Draft202012Validator(schema).iter_errors(report)] == []
    flows = {f["outcome"]: f for f in report["population"]["outcomes"]}
    assert set(flows) == {"below_42_12m", "change_24m"}
    effects = {e["outcome"]: e for e in report["effects"]}
    participants = next(r for r in report["reconciliation"] if r["source"] == "deltagare")
    for outcome, flow in flows.items():
        arms = {a["group"]: a for a in flow["arms"]}
        assert (
            arms["treated"]["enrolled"] + arms["comparison"]["enrolled"] == participants["loaded"]
        )
        for arm in arms.values():
            excluded = sum(e["persons"] for e in arm["excluded"])
            dropped = sum(d["persons"] for d in arm["dropped"])
            assert excluded > 0 and dropped > 0, (outcome, arm)
            assert arm["enrolled"] == arm["eligible"] + excluded, (outcome, arm)
            assert arm["eligible"] == arm["analysed"] + dropped, (outcome, arm)
        assert arms["treated"]["analysed"] == effects[outcome]["n_treated"]
        assert arms["comparison"]["analysed"] == effects[outcome]["n_comparison"]
    excluded_all = sum(e["persons"] for a in flows["below_42_12m"]["arms"] for e in a["excluded"])
    assert excluded_all == truth["n_ineligible"]
    conversions = {
        (c["analyte"], c["conversion"]): c["rows"] for c in report["population"]["conversions"]
    }
    assert set(conversions) == {
        ("HbA1c", "ifcc"),
        ("HbA1c", "mono_s"),
        ("fasting_glucose", "mmol_l"),
        ("fasting_glucose", "mg_dl"),
        ("weight", "kg"),
        ("bmi", "kg_m2"),
    }
    assert (
        conversions["fasting_glucose", "mmol_l"] + conversions["fasting_glucose", "mg_dl"] == 3000
    )
    assert "mg_dl by mmol/L = mg/dL ÷ 18.016" in (tmp_path / "report" / "report.html").read_text(
        encoding="utf-8"
    )
    html = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert "excluded: not eligible (age)" in html
    assert "excluded: not eligible (baseline_hba1c)" in html
    assert "dropped: no outcome" in html
    # the same flow in marts.person_flow (suppressed as in the report)
    from utfall import warehouse

    con = warehouse.connect(tmp_path / "w.duckdb")
    try:
        mart = warehouse.read_table(
            con,
            "SELECT outcome, arm, step, reason, variable, persons, suppressed "
            "FROM marts.person_flow ORDER BY outcome, arm DESC, seq",
        )
    finally:
        con.close()
    for outcome, flow in flows.items():
        for arm in flow["arms"]:
            rows = mart.filter((pl.col("outcome") == outcome) & (pl.col("arm") == arm["group"]))
            expected = [("enrolled", None, None, arm["enrolled"])]
            expected += [
                ("excluded", "not_eligible", e["criterion"], e["persons"]) for e in arm["excluded"]
            ]
            expected += [("eligible", None, None, arm["eligible"])]
            expected += [
                ("dropped", d["reason"], d["column"], d["persons"]) for d in arm["dropped"]
            ]
            expected += [("analysed", None, None, arm["analysed"])]
            assert rows.select("step", "reason", "variable", "persons").rows() == expected
    v = verify_package(tmp_path / "report")
    assert v.problems == [], v.problems

    # a flow count changed after the report was written is found by the recomputation
    path = tmp_path / "report" / "report.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["population"]["outcomes"][0]["arms"][0]["excluded"][0]["persons"] += 1
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    problems = verify_package(tmp_path / "report").problems
    assert any("$.population.outcomes[0].arms[0].excluded[0].persons" in p for p in problems), (
        problems
    )

    # a package built before lab results held `value` and `unit` (HbA1c in hba1c_mmol_mol)
    # is named as such by verify, not by a SQL error
    labs = tmp_path / "report" / "inputs" / "staging_lab_results.parquet"
    old = pl.read_parquet(labs).rename({"value": "hba1c_mmol_mol"}).drop("unit")
    old.write_parquet(labs)
    problems = verify_package(tmp_path / "report").problems
    assert any(
        "built by another version of utfall" in p and "hba1c_mmol_mol" in p for p in problems
    ), problems
