"""End to end through `utfall run` (a subprocess, as a user runs it): a plan and its
deliveries written into tmp_path, measured, and the report checked against known answers.

Case A (did_2x2 on a unit_panel): no package on the index ships the Card & Krueger (1994)
NJ/PA minimum-wage data (it is in R packages only, e.g. loedata's Fastfood), so this is a
simulated panel with a known effect (+2.0 per unit and quarter in the treated units'
measurement quarters), delivered as Swedish Excel CSV (`;`, decimal comma, Windows-1252)
with unit weights. The run's estimate must equal the 2x2 difference in differences computed
here by hand from the delivered file (to 1e-9), and its interval must cover the truth.
Every run costs a Great Expectations import (~10 s), hence `slow`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
import yaml

from tests.conftest import TEST_KEY

pytestmark = pytest.mark.slow

TRUE_EFFECT = 2.0


def utfall_run(plan: Path, deliveries: Path, root: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, UTFALL_PSEUDONYM_KEY=TEST_KEY)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "utfall.cli",
            "run",
            str(plan),
            "--deliveries",
            str(deliveries),
            "--warehouse",
            str(root / "w.duckdb"),
            "--out",
            str(root / "report"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def panel_plan(method: str = "did_2x2", parameters: dict | None = None) -> dict:
    return {
        "plan_version": 1,
        "contract": {
            "id": "e2e-panel",
            "title": "Simulated unit panel",
            "instrument": "outcome_based_procurement",
        },
        "parties": {
            "outcome_payer": "Kommunen",
            "provider": "Leverantör AB",
            "investor": None,
            "independent_validator": "Granskare",
        },
        "periods": {
            "baseline": {"start": "2022-01-01", "end": "2023-12-31"},
            "measurement": {"start": "2024-01-01", "end": "2024-12-31"},
            "frequency": "quarterly",
        },
        "sources": [
            {
                "name": "enheter",
                "kind": "unit_panel",
                "path": "panel.csv",
                "format": "csv",
                "csv": {"delimiter": ";", "encoding": "cp1252", "decimal": ","},
                "columns": {
                    "unit_id": "enhet",
                    "period": "kvartal",
                    "treated": "insats",
                    "weight": "invånare",
                },
                "treatment_values": {"treated": ["ja"], "comparison": ["nej"]},
                "outcome_columns": {"sysselsattning": "sysselsättning"},
            }
        ],
        "outcomes": [
            {
                "id": "sysselsattning",
                "metric": "panel_value",
                "source": "enheter",
                "unit": "employed per 100 inhabitants",
                "desired_direction": "increase",
                "parameters": {"column": "sysselsattning"},
            }
        ],
        "counterfactual": {
            "method": method,
            "parameters": parameters if parameters is not None else {"weight": "exposure"},
            "confidence": 0.95,
            "seed": 20240101,
        },
        "payment": {
            "currency": "SEK",
            "outcome": "sysselsattning",
            "basis": "point_estimate",
            "rules": [
                {"kind": "fixed", "amount": "500000.00"},
                {
                    "kind": "linear_to_target",
                    "amount": "1000000.00",
                    "target_relative_reduction": 0.05,
                },
            ],
        },
        "disclosure": {"min_cell_size": 5},
    }


def simulated_panel(n_treated: int = 12, n_comparison: int = 14, seed: int = 5) -> pl.DataFrame:
    """Units x 12 quarters: unit level + common quarter shock + noise, +TRUE_EFFECT in the
    treated units' measurement quarters; weights (inhabitants) vary by unit."""
    rng = np.random.default_rng(seed)
    quarters = [dt.date(y, m, 1) for y in (2022, 2023, 2024) for m in (1, 4, 7, 10)]
    shocks = rng.normal(0, 1.0, len(quarters))
    rows = []
    for u in range(n_treated + n_comparison):
        treated = u < n_treated
        level, weight = 40 + rng.normal(0, 5), int(rng.integers(200, 5000))
        for q, shock in zip(quarters, shocks, strict=True):
            effect = TRUE_EFFECT if treated and q.year == 2024 else 0.0
            y = level + shock + effect + rng.normal(0, 0.6)
            rows.append(
                {
                    "enhet": f"Enhet {u:02d} Å",
                    "kvartal": q.isoformat(),
                    "insats": "ja" if treated else "nej",
                    "invånare": str(weight),
                    "sysselsättning": f"{y:.4f}".replace(".", ","),
                }
            )
    return pl.DataFrame(rows)


def write_case(root: Path, frame: pl.DataFrame, plan: dict) -> tuple[Path, Path]:
    deliveries = root / "deliveries"
    deliveries.mkdir(parents=True)
    text = frame.write_csv(separator=";", line_terminator="\r\n")
    (deliveries / "panel.csv").write_bytes(text.encode("cp1252"))
    path = root / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path, deliveries


def hand_did(frame: pl.DataFrame) -> float:
    """did_2x2 with exposure weights, by its formula (utfall/estimators/did.py): per unit,
    L = sum(value x w) / sum(w) per phase (w constant per unit here, so the mean), unit
    weight = mean w; estimate = weighted mean change (treated) - (comparison)."""
    f = frame.with_columns(
        pl.col("sysselsättning").str.replace(",", ".").cast(pl.Float64).alias("y"),
        pl.col("invånare").cast(pl.Float64).alias("w"),
        (pl.col("kvartal") >= "2024-01-01").alias("post"),
    )
    units = f.group_by("enhet", "insats").agg(
        (
            pl.col("y").filter(pl.col("post")).mean() - pl.col("y").filter(~pl.col("post")).mean()
        ).alias("change"),
        pl.col("w").mean(),
    )
    means = units.group_by("insats").agg((pl.col("change") * pl.col("w")).sum() / pl.col("w").sum())
    by = dict(means.iter_rows())
    return by["ja"] - by["nej"]


@pytest.fixture(scope="module")
def panel_case(tmp_path_factory):
    """The simulated panel measured twice, into two warehouses and report folders."""
    frame = simulated_panel()
    runs = []
    for i in range(2):
        root = tmp_path_factory.mktemp(f"panel{i}")
        plan, deliveries = write_case(root, frame, panel_plan())
        runs.append((root, utfall_run(plan, deliveries, root)))
    return frame, runs


def test_did_on_a_unit_panel_matches_the_hand_computed_2x2(panel_case):
    frame, runs = panel_case
    root, proc = runs[0]
    assert proc.returncode == 0, proc.stderr
    report = json.loads((root / "report" / "report.json").read_text(encoding="utf-8"))
    (effect,) = report["effects"]
    assert effect["method"] == "did_2x2"
    assert effect["n_treated"] == 12 and effect["n_comparison"] == 14
    assert effect["estimate"] == pytest.approx(hand_did(frame), abs=1e-9)
    assert effect["ci_low"] < TRUE_EFFECT < effect["ci_high"]
    assert abs(effect["estimate"] - TRUE_EFFECT) < 0.5
    # every delivered row loaded; the panel's cells are aggregates, not suppressed
    assert report["reconciliation"] == [
        {"by_rule": {}, "delivered": 312, "loaded": 312, "quarantined": 0, "source": "enheter"}
    ]
    series = report["outcomes"][0]["series"]
    assert len(series) == 24 and not any(r["suppressed"] for r in series)
    assert "sysselsattning: +" in proc.stdout and "proposed payment" in proc.stdout
    # publishable diagnostics only (the allow-list), and no per-unit detail
    assert "units" not in effect["diagnostics"] and "pre_trend" in effect["diagnostics"]


def test_reruns_give_the_same_report_bytes(panel_case):
    _, runs = panel_case
    (a, pa), (b, pb) = runs
    assert pa.returncode == pb.returncode == 0
    for name in ("report.json", "report.html"):
        assert (a / "report" / name).read_bytes() == (b / "report" / name).read_bytes()


def test_restricted_detail_stays_in_the_warehouse(panel_case):
    _, runs = panel_case
    root, _ = runs[0]
    con = duckdb.connect(str(root / "w.duckdb"), read_only=True)
    try:
        stored = con.sql("SELECT restricted_json FROM work.effects").fetchall()
        assert len(stored) == 1 and json.loads(stored[0][0]) == {}
        columns = [c[0] for c in con.sql("DESCRIBE marts.effects").fetchall()]
        assert "restricted_json" not in columns and "result_json" not in columns
        # the whole result (with per-unit diagnostics) only in the restricted schema
        restricted = [c[0] for c in con.sql("DESCRIBE restricted.effects").fetchall()]
        assert "restricted_json" not in restricted
    finally:
        con.close()
    text = (root / "report" / "report.json").read_text(encoding="utf-8")
    assert '"restricted"' not in text and "restricted_json" not in text


def test_a_method_that_cannot_estimate_stops_the_run(tmp_path):
    """One treated unit: did_2x2 cannot give a unit-clustered SE. The run fails with one
    line naming the outcome, status failed, nothing published, no report."""
    frame = simulated_panel(n_treated=1, n_comparison=6)
    plan, deliveries = write_case(tmp_path, frame, panel_plan())
    proc = utfall_run(plan, deliveries, tmp_path)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "group 'treated' has 1 unit(s)" in last and "Traceback" not in proc.stderr
    assert not (tmp_path / "report").exists()
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    try:
        assert con.sql("SELECT status, stage FROM ledger.runs").fetchall() == [
            ("failed", "effects")
        ]
        assert con.sql("SELECT count(*) FROM ledger.published").fetchall() == [(0,)]
    finally:
        con.close()


def test_warnings_reach_the_run_output_and_the_report(tmp_path):
    """A unit delivered only in the baseline is excluded by did_2x2 with a warning: the
    user sees it on stderr and in the report's warnings."""
    frame = simulated_panel().filter(
        ~((pl.col("enhet") == "Enhet 13 Å") & (pl.col("kvartal") >= "2024-01-01"))
    )
    plan, deliveries = write_case(tmp_path, frame, panel_plan())
    proc = utfall_run(plan, deliveries, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "warning: sysselsattning (did_2x2): 1 unit(s) excluded" in proc.stderr
    report = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))
    assert any(
        w.startswith("effect on sysselsattning (did_2x2): 1 unit(s) excluded")
        for w in report["warnings"]
    )
    assert report["effects"][0]["n_comparison"] == 13


def test_a_panel_without_measurement_periods_is_blocked_before_estimating(tmp_path):
    """Every row valid, but no measurement period delivered: the data-quality expectation
    (value_ranges, block) refuses the delivery; the run is rejected, nothing published."""
    frame = simulated_panel().filter(pl.col("kvartal") < "2024-01-01")
    plan, deliveries = write_case(tmp_path, frame, panel_plan())
    proc = utfall_run(plan, deliveries, tmp_path)
    assert proc.returncode == 2
    message = proc.stderr.strip().splitlines()[-1]
    assert "value_ranges" in message and "lacks baseline or measurement periods" in message
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    try:
        assert con.sql("SELECT status, stage FROM ledger.runs").fetchall() == [
            ("rejected", "data quality")
        ]
    finally:
        con.close()
    assert not (tmp_path / "report").exists()


# --- Methods of the person and panel engineers, through a plan (after merging h-person and
# h-panel). Published numbers, from data that ship in PyPI packages (test extra). ----------


def base_plan(contract: str, source: dict, outcome: dict, counterfactual: dict) -> dict:
    plan = panel_plan()
    plan["contract"]["id"] = contract
    plan["sources"] = [source]
    plan["outcomes"] = [outcome]
    plan["counterfactual"] = counterfactual
    plan["payment"]["outcome"] = outcome["id"]
    return plan


def test_ipw_on_nhefs_reproduces_hernan_robins(tmp_path):
    """Case: NHEFS (causaldata's nhefs_complete, 1 566 persons), Hernan and Robins, *Causal
    Inference: What If* (2020), Program 12.2: the IP-weighted effect of quitting smoking on
    weight gain 1971-1982 is 3.44 kg (95 % CI 2.41 to 4.47, conservative robust SE).
    Tolerance: 0.005 kg on the estimate (the book prints 3.44); our sandwich accounts for
    the estimated propensity, so the interval is narrower but must hold 3.44 and exclude 0.
    Delivered as a Parquet person table with narrow types (int8 categories, float32 weight)."""
    from tests.published_data import NHEFS_PROPENSITY, nhefs

    people = nhefs()
    numeric = ["age", "smokeintensity", "smokeyrs", "wt71"]
    categories = ["sex", "race", "education", "exercise", "active"]
    delivered = people.select(
        pl.col("person_id").alias("seqn"),
        pl.col("treated").cast(pl.Int8).alias("qsmk"),
        pl.col("y").cast(pl.Float64).alias("wt82_71"),
        *[pl.col(c).cast(pl.Float64).alias(c) for c in numeric],
        *[pl.col(c).alias(c) for c in categories],
    )
    deliveries = tmp_path / "deliveries"
    deliveries.mkdir()
    delivered.write_parquet(deliveries / "nhefs.parquet")
    source = {
        "name": "nhefs",
        "kind": "person_table",
        "path": "nhefs.parquet",
        "format": "parquet",
        "columns": {"person_id": "seqn", "treatment": "qsmk"},
        "treatment_values": {"treated": [1], "comparison": [0]},
        "outcome_columns": {"weight_gain": "wt82_71"},
        "covariates": {
            **{c: {"column": c, "type": "numeric"} for c in numeric},
            **{c: {"column": c, "type": "categorical"} for c in categories},
        },
    }
    outcome = {
        "id": "weight_gain",
        "metric": "person_value",
        "source": "nhefs",
        "unit": "kg",
        "desired_direction": "increase",
        "parameters": {"column": "weight_gain"},
    }
    cf = {
        "method": "ipw",
        "parameters": {"propensity": NHEFS_PROPENSITY, "estimand": "ATE"},
        "confidence": 0.95,
        "seed": 1,
    }
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        yaml.safe_dump(base_plan("e2e-nhefs", source, outcome, cf), sort_keys=False),
        encoding="utf-8",
    )
    proc = utfall_run(plan, deliveries, tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))
    (effect,) = report["effects"]
    assert effect["method"] == "ipw" and effect["estimand"] == "ATE"
    assert effect["n_treated"] == 403 and effect["n_comparison"] == 1163
    assert effect["estimate"] == pytest.approx(3.44, abs=0.005)
    assert 0 < effect["ci_low"] < 3.44 < effect["ci_high"]
    assert report["reconciliation"][0]["loaded"] == 1566
    assert report["outcomes"][0]["series"] == []  # no quarterly panel for a person table


def test_staggered_on_mpdta_reproduces_callaway_santanna(tmp_path):
    """Case: mpdta (county teen employment 2003-2007, shipped by moderndid), Callaway and
    Sant'Anna (2021) / the did package's vignette: att_gt(lemp, never-treated comparison),
    simple aggregation overall ATT -0.0400. Tolerance 5e-5. Delivered as a UTF-8 CSV
    unit panel with a treatment start date (empty: never treated), frequency annual."""
    from tests.published_panel_data import mpdta

    panel = mpdta()
    delivered = panel.select(
        pl.col("unit_id").alias("county"),
        pl.col("period_start").alias("year"),
        pl.col("treatment_start").alias("first_treated"),
        (pl.col("numerator") / pl.col("denominator")).alias("lemp"),
    )
    deliveries = tmp_path / "deliveries"
    deliveries.mkdir()
    delivered.write_csv(deliveries / "mpdta.csv")
    source = {
        "name": "counties",
        "kind": "unit_panel",
        "path": "mpdta.csv",
        "format": "csv",
        "columns": {"unit_id": "county", "period": "year", "treatment_start": "first_treated"},
        "outcome_columns": {"lemp": "lemp"},
    }
    outcome = {
        "id": "teen_employment",
        "metric": "panel_value",
        "source": "counties",
        "unit": "log teen employment",
        "desired_direction": "increase",
        "parameters": {"column": "lemp"},
    }
    cf = {"method": "staggered", "confidence": 0.95, "seed": 1}
    plan_data = base_plan("e2e-mpdta", source, outcome, cf)
    plan_data["periods"] = {
        "baseline": {"start": "2003-01-01", "end": "2003-12-31"},
        "measurement": {"start": "2004-01-01", "end": "2007-12-31"},
        "frequency": "annual",
    }
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(plan_data, sort_keys=False), encoding="utf-8")
    proc = utfall_run(plan, deliveries, tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))
    (effect,) = report["effects"]
    assert effect["method"] == "staggered"
    assert effect["estimate"] == pytest.approx(-0.0400, abs=5e-5)
    assert report["reconciliation"][0]["loaded"] == 2500


def test_an_estimation_error_stops_the_run_with_its_message(tmp_path):
    """Case: organ donation registration rates, 27 US states x 6 quarters (Kessler and Roth
    2014, as in Huntington-Klein, *The Effect*, ch. 18; shipped by causaldata), California
    treated from 2011Q3. twfe refuses a single treated unit with an EstimationError that says
    what to use instead: the run fails with that one line, nothing is published."""
    from causaldata import organ_donations

    raw = pl.from_pandas(organ_donations.load_pandas().data)
    quarters = {
        f"Q{q}{y}": dt.date(y, 3 * q - 2, 1) for y in (2010, 2011, 2012) for q in range(1, 5)
    }
    delivered = raw.select(
        pl.col("State").alias("state"),
        pl.col("Quarter").replace_strict(quarters, return_dtype=pl.Date).alias("quarter"),
        (pl.col("State") == "California").cast(pl.Int8).alias("ca"),
        pl.col("Rate").alias("rate"),
    )
    deliveries = tmp_path / "deliveries"
    deliveries.mkdir()
    delivered.write_parquet(deliveries / "organ.parquet")
    source = {
        "name": "states",
        "kind": "unit_panel",
        "path": "organ.parquet",
        "format": "parquet",
        "columns": {"unit_id": "state", "period": "quarter", "treated": "ca"},
        "treatment_values": {"treated": [1], "comparison": [0]},
        "outcome_columns": {"rate": "rate"},
    }
    outcome = {
        "id": "donor_rate",
        "metric": "panel_value",
        "source": "states",
        "unit": "share registered",
        "desired_direction": "increase",
        "parameters": {"column": "rate"},
    }
    plan_data = base_plan(
        "e2e-organ", source, outcome, {"method": "twfe", "confidence": 0.95, "seed": 1}
    )
    plan_data["periods"] = {
        "baseline": {"start": "2010-10-01", "end": "2011-06-30"},
        "measurement": {"start": "2011-07-01", "end": "2012-03-31"},
        "frequency": "quarterly",
    }
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(plan_data, sort_keys=False), encoding="utf-8")
    proc = utfall_run(plan, deliveries, tmp_path)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "twfe: 1 treated unit(s) observed after treatment start" in last
    assert "use synthetic_control or its" in last and "Traceback" not in proc.stderr
    assert not (tmp_path / "report").exists()
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    try:
        status = con.sql("SELECT status, stage, error FROM ledger.runs").fetchall()
        assert [(s, st) for s, st, _ in status] == [("failed", "effects")]
        assert "use synthetic_control or its" in status[0][2]
        assert con.sql("SELECT count(*) FROM ledger.published").fetchall() == [(0,)]
    finally:
        con.close()


def test_diff_in_means_on_nsw_reproduces_the_experimental_benchmark(tmp_path):
    """Case: the NSW experiment (LaLonde 1986; Dehejia and Wahba 1999, Table 3; as shipped
    in causaldata's nsw_mixtape, Cunningham's *Mixtape* ch. 5): 185 treated and 260 control
    men, effect of job training on 1978 earnings = 6 349.14 - 4 554.80 = USD 1 794.34.
    Tolerance 0.01 USD. Delivered as a Swedish Excel CSV (`;`, decimal comma, cp1252)."""
    from tests.published_data import nsw

    people = nsw()
    covariates = ["age", "educ", "black", "hisp", "marr", "nodegree", "re74", "re75"]
    text = people.select(
        pl.col("person_id").alias("löpnr"),
        pl.when(pl.col("treated") == 1)
        .then(pl.lit("utbildning"))
        .otherwise(pl.lit("kontroll"))
        .alias("grupp"),
        *[
            pl.col(c).cast(pl.String).str.replace(".", ",", literal=True).alias(c)
            for c in ["y", *covariates]
        ],
    ).write_csv(separator=";")
    deliveries = tmp_path / "deliveries"
    deliveries.mkdir()
    (deliveries / "nsw.csv").write_bytes(text.encode("cp1252"))
    source = {
        "name": "nsw",
        "kind": "person_table",
        "path": "nsw.csv",
        "format": "csv",
        "csv": {"delimiter": ";", "encoding": "cp1252", "decimal": ","},
        "columns": {"person_id": "löpnr", "treatment": "grupp"},
        "treatment_values": {"treated": ["utbildning"], "comparison": ["kontroll"]},
        "outcome_columns": {"earnings_1978": "y"},
        "covariates": {c: {"column": c, "type": "numeric"} for c in covariates},
    }
    outcome = {
        "id": "earnings_1978",
        "metric": "person_value",
        "source": "nsw",
        "unit": "USD",
        "desired_direction": "increase",
        "parameters": {"column": "earnings_1978"},
    }
    cf = {"method": "diff_in_means", "confidence": 0.95, "seed": 1}
    plan = tmp_path / "plan.yaml"
    plan_data = base_plan("e2e-nsw", source, outcome, cf)
    plan.write_text(yaml.safe_dump(plan_data, sort_keys=False, allow_unicode=True), "utf-8")
    proc = utfall_run(plan, deliveries, tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))
    (effect,) = report["effects"]
    assert effect["n_treated"] == 185 and effect["n_comparison"] == 260
    assert effect["estimate"] == pytest.approx(1794.34, abs=0.01)
    assert report["reconciliation"][0]["quarantined"] == 0
