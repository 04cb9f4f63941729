"""A health bond paid in an interim and a final period: the interim sees what was observed
by its `through` (HbA1c samples up to it, 12-month follow-up windows complete by it), and
`utfall verify` recomputes the interim package to the same numbers."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import yaml

from utfall import cli
from utfall.paths import EXAMPLE_PLANS
from utfall.pipeline import run
from utfall.plan import load_plan
from utfall.replication import verify_package

THROUGH = dt.date(2024, 12, 31)
#: The latest enrolment whose 12-month window (anniversary + 90 days) ends by THROUGH.
LAST_COMPLETE = dt.date(2023, 10, 2)


def _analysed(report_dir) -> dict[str, int]:
    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    (flow,) = [f for f in report["population"]["outcomes"] if f["outcome"] == "below_42_12m"]
    return {a["group"]: a["analysed"] for a in flow["arms"]}


def test_interim_counts_only_complete_windows_and_verifies(tmp_path, pseudonym_key):
    data = yaml.safe_load((EXAMPLE_PLANS / "health_bond.yaml").read_text(encoding="utf-8"))
    # the 24-month outcome has no complete window by the interim: this contract reports the
    # 12-month one only
    data["outcomes"] = [o for o in data["outcomes"] if o["id"] == "below_42_12m"]
    data["payment"]["periods"] = [
        {"name": "interim", "kind": "interim", "through": THROUGH.isoformat()},
        {"name": "final", "kind": "final", "through": "2025-12-31"},
    ]
    path = tmp_path / "health_bond.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    plan = load_plan(path)
    deliveries = tmp_path / "deliveries"
    cli.simulate_deliveries(EXAMPLE_PLANS / "health_bond.yaml", deliveries, 1500, 0.0, 0.0, 7)

    run(plan, tmp_path / "w.duckdb", deliveries, tmp_path / "interim", period="interim")
    run(
        plan,
        tmp_path / "w.duckdb",
        deliveries,
        tmp_path / "final",
        period="final",
        provisional=True,
    )
    interim, final = _analysed(tmp_path / "interim"), _analysed(tmp_path / "final")
    people = pl.read_csv(deliveries / "participants.csv", separator=";", try_parse_dates=True)
    late = people.filter(pl.col("enrolled_on") > LAST_COMPLETE).height
    lost = sum(final.values()) - sum(interim.values())
    # only persons enrolled too late for a complete window by the interim are not yet analysed
    assert 0 < lost <= late, (interim, final, late)
    assert all(interim[g] < final[g] for g in final)
    report = json.loads((tmp_path / "interim" / "report.json").read_text(encoding="utf-8"))
    assert report["payment"]["period"]["name"] == "interim"
    v = verify_package(tmp_path / "interim")
    assert v.problems == [], v.problems


def test_an_outcome_nobody_has_by_the_interim_stops_the_run_saying_so(
    tmp_path, pseudonym_key, capsys
):
    """The example's 24-month change: no window is complete a year into the measurement."""
    data = yaml.safe_load((EXAMPLE_PLANS / "health_bond.yaml").read_text(encoding="utf-8"))
    data["payment"]["periods"] = [
        {"name": "interim", "kind": "interim", "through": THROUGH.isoformat()},
        {"name": "final", "kind": "final", "through": "2025-12-31"},
    ]
    path = tmp_path / "health_bond.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    deliveries = tmp_path / "deliveries"
    cli.simulate_deliveries(EXAMPLE_PLANS / "health_bond.yaml", deliveries, 800, 0.0, 0.0, 3)
    args = ["run", str(path), "--deliveries", str(deliveries), "--period", "interim"]
    out = ["--warehouse", str(tmp_path / "w.duckdb"), "--out", str(tmp_path / "report")]
    code = cli.main([*args, *out])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert (
        "utfall: error: outcome 'change_24m': no person has it observed by 2024-12-31, the "
        "through of payment period 'interim'"
    ) in err
