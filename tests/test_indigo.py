"""`utfall export indigo`: the example contract's report mapped to INDIGO 4.1.0 fields."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests.test_report import sample_report, with_contract
from utfall import indigo
from utfall.cli import main
from utfall.report import dumps, write_report


@pytest.fixture(scope="module")
def report_dir(example_plan, tmp_path_factory):
    plan = with_contract(example_plan, agreed_on="2024-11-15")
    out = tmp_path_factory.mktemp("indigo") / "report"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UTFALL_CHROMIUM", "off")
        write_report(sample_report(plan), out, run_id="r1")
    return out


def test_demo_report_maps_to_indigo_fields(report_dir, tmp_path):
    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    paths = indigo.export(report_dir, tmp_path / "x")
    rec = json.loads(paths["indigo_project.json"].read_text(encoding="utf-8"))
    assert rec["name"] == {"value": report["contract"]["title"]}
    assert rec["dates"] == {"outcomes_contract_signed": {"value": "2024-11-15"}}
    maximum = rec["overall_project_finance"]["maximum_potential_outcome_payment_v2"]
    assert maximum == {"currency": {"value": "SEK"}, "amount": {"value": 2000000.0}}
    metrics = {m["id"]: m for m in rec["outcome_metrics"]}
    assert set(metrics) == {"short_term_sick_days", "sick_leave_rate"}
    paid = metrics["short_term_sick_days"]
    assert paid["outcome_validation_method"] == {"value": "Quasi-experimental study"}
    assert paid["outcome_validation_method"]["value"] in indigo.VALIDATION_METHODS
    assert "in full at 12 %" in paid["outcome_metric_target"]["value"]
    assert "outcome_metric_target" not in metrics["sick_leave_rate"]  # not paid on
    assert report["plan"]["hash"] in paid["notes"]
    pricing = rec["outcome_pricings"][0]
    assert pricing["outcome_metric_id"] == {"value": "short_term_sick_days"}
    # INDIGO 4.1.0 types this one amount as text (object_with_value_string)
    assert pricing["maximum_price_if_all_targets_achieved"] == {"amount": {"value": "2000000.00"}}
    assert "up to 1400000.00 SEK" in pricing["price_description"]["value"]
    effect = report["effects"][0]
    result = rec["results"][0]
    assert result["outcome_metric_id"] == {"value": effect["outcome"]}
    assert result["result_level"] == {"value": "Outcome level"}
    assert result["period"] == {
        "start_date": {"value": "2025-01-01"},
        "end_date": {"value": "2025-12-31"},
    }
    assert result["outcomes_achieved"]["value"].startswith(
        f"{effect['relative_estimate'] * 100:+.1f} % against the counterfactual"
    )
    assert result["number_engaged_in_impact_bond"] == {"value": 1400}
    (payment,) = rec["outcome_payments"]
    assert payment["type"] == {"value": "Planned"}  # pending validation
    assert payment["money"]["amount"] == {"value": float(report["payment"]["total"])}
    assert rec["status"] == "PRIVATE"


def test_csv_holds_the_same_fields(report_dir, tmp_path):
    paths = indigo.export(report_dir, tmp_path / "x")
    rec = json.loads(paths["indigo_project.json"].read_text(encoding="utf-8"))
    rows = list(csv.reader(io.StringIO(paths["indigo_project.csv"].read_text("utf-8"))))
    assert rows[0] == ["path", "value"]
    flat = {p: "" if v is None else str(v) for p, v in indigo.flatten(rec)}
    assert dict(rows[1:]) == flat and len(rows) - 1 == len(flat)
    assert flat["outcome_metrics/0/outcome_validation_method/value"] == "Quasi-experimental study"
    again = indigo.export(report_dir, tmp_path / "y")
    for name, path in paths.items():
        assert path.read_bytes() == again[name].read_bytes()


@pytest.mark.parametrize(
    ("decision", "kind"),
    [({"decision": "approved"}, "Actual"), ({"decision": "rejected", "reason": "x"}, None)],
)
def test_payment_follows_the_validators_decision(report_dir, tmp_path, decision, kind):
    d = tmp_path / "r"
    d.mkdir()
    (d / "report.json").write_bytes((report_dir / "report.json").read_bytes())
    (d / "decision.json").write_text(json.dumps(decision), encoding="utf-8")
    rec = json.loads(indigo.export(d)["indigo_project.json"].read_text(encoding="utf-8"))
    assert [p["type"]["value"] for p in rec["outcome_payments"]] == ([kind] if kind else [])
    assert decision["decision"] in rec["results"][0]["notes"]
    assert (d / "indigo" / "indigo_project.csv").exists()


def test_unknown_method_is_not_available(report_dir):
    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    report["method"]["name"] = "something_new"
    rec = indigo.to_indigo(report)
    m = rec["outcome_metrics"][0]
    assert m["outcome_validation_method"] == {"value": "Not available"}
    assert "has no INDIGO validation method" in m["notes"]


def test_suppressed_count_is_not_exported(report_dir):
    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    for g in report["population"]["groups"]:
        g["analysed"] = None
    assert "number_engaged_in_impact_bond" not in indigo.to_indigo(report)["results"][0]


def test_bad_report_folders_give_one_line(tmp_path, capsys, report_dir):
    cases = {}
    cases["missing"] = tmp_path / "nope"
    empty = tmp_path / "empty"
    empty.mkdir()
    cases["no report.json"] = empty
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "report.json").write_text("{not json", encoding="utf-8")
    cases["not JSON"] = bad
    old = tmp_path / "old"
    old.mkdir()
    (old / "report.json").write_text(dumps({"report_format": 1}), encoding="utf-8")
    cases["format 1"] = old
    badd = tmp_path / "badd"
    badd.mkdir()
    (badd / "report.json").write_bytes((report_dir / "report.json").read_bytes())
    (badd / "decision.json").write_text("[", encoding="utf-8")
    cases["bad decision"] = badd
    expected = {
        "missing": "nope: not a report folder",
        "no report.json": "empty/report.json: not found",
        "not JSON": "bad/report.json: not valid JSON",
        "format 1": "old/report.json: report_format 1 is not supported",
        "bad decision": "badd/decision.json: not valid JSON",
    }
    for name, path in cases.items():
        assert main(["export", "indigo", str(path)]) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected[name] in err, (name, err)


def test_cli_writes_beside_the_report(report_dir, capsys):
    assert main(["export", "indigo", str(report_dir)]) == 0
    out = capsys.readouterr().out
    assert str(report_dir / "indigo" / "indigo_project.json") in out and "4.1.0" in out
