"""The person-level source kinds `participants` and `lab_results` (utfall/kinds): loaded from
both Swedish CSV dialects and Parquet to the same staged rows, each defect class quarantined
with its rule (the rules of utfall.domains), delivered = loaded + quarantined, identity
numbers pseudonymised, HbA1c converted to IFCC mmol/mol by the scale the value was on."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.conftest import new_warehouse
from utfall import warehouse
from utfall.ingest import ingest_source
from utfall.paths import EXAMPLE_PLANS
from utfall.personnummer import luhn_digit
from utfall.plan import Plan, load_plan
from utfall.validate import staged_generic, validate_source
from utfall.warehouse import runs

KEY = b"k" * 32
HEADER = ["person_id", "treated", "enrolled_on", "exit_on", "exit_reason", "age", "sex"]
HEADER += ["clinic", "baseline_hba1c"]
CHECK = int(luhn_digit("650312238"))
PNR = f"19650312-238{CHECK}"
BAD_PNR = f"19650312-238{(CHECK + 1) % 10}"
PEOPLE = [
    (PNR, "1", "2023-02-01", "2024-02-01", "completed", "58", "K", "vc_a", "44.5"),
    ("h2", "0", "2023-03-15", None, None, "52", "M", "vc_b", "46"),
    ("h3", "2", "2023-03-15", None, None, "52", "M", "vc_b", "46"),  # treated_not_0_1
    ("h4", "1", "2023-03-15", "2023-05-01", None, "52", "M", "vc_b", "46"),  # no reason
    ("h5", "1", "2023-13-45", None, None, "52", "M", "vc_b", "46"),  # invalid_date
    ("h6", "1", "2023-03-15", None, None, "52", "M", "vc_b", "4x"),  # not a number
    (BAD_PNR, "1", "2023-03-15", None, None, "52", "M", "vc_b", "46"),  # bad pnr
]
LABS = [
    ("h1", "2023-02-01", "HbA1c", "44", "mmol/mol"),
    ("h1", "2024-02-01", "HbA1c", "6.5", "% NGSP"),  # 10.929 x 4.348 = 47.519 -> 48
    ("h1", "2009-03-01", "HbA1c", "5.5", "%"),  # Mono-S: 10.11 x 5.5 - 8.9 = 46.705 -> 47
    ("h1", "2023-02-01", "HbA1c", "44", "mmol/mol"),  # duplicate_row
    ("h1", "2024-02-02", "glukos", "6.1", "mmol/l"),  # unknown_analyte (not fasting glucose)
    ("h1", "2024-02-03", "HbA1c", "250", "mmol/mol"),  # out_of_range
    ("h1", "2024-02-04", "HbA1c", "44", "mmHg"),  # unknown_unit
    ("h1", "", "HbA1c", "44", "mmol/mol"),  # missing_field
]
LAB_HEADER = ["person_id", "sample_date", "analyte", "value", "unit"]


def plan_for(tmp_path: Path, dialect: str) -> Plan:
    data = yaml.safe_load((EXAMPLE_PLANS / "health_bond.yaml").read_text(encoding="utf-8"))
    data = copy.deepcopy(data)
    for s in data["sources"]:
        s["max_quarantine_share"] = 1.0
        stem = s["path"].split(".")[0]
        if dialect == "parquet":
            s.pop("csv", None)
            s["format"], s["path"] = "parquet", f"{stem}.parquet"
        else:
            s["format"], s["path"] = "csv", f"{stem}.csv"
            s["csv"] = (
                {"delimiter": ";", "encoding": "cp1252", "decimal": ","}
                if dialect == "semicolon"
                else {"delimiter": ",", "encoding": "utf-8"}
            )
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return load_plan(path)


def write(path: Path, header: list[str], rows, dialect: str) -> None:
    frame = pl.DataFrame([list(r) for r in rows], schema=header, orient="row")
    if dialect == "parquet":
        frame.write_parquet(path.with_suffix(".parquet"))
    elif dialect == "semicolon":
        comma = frame.with_columns(
            [
                pl.col(c).str.replace(".", ",", literal=True)
                for c in ("baseline_hba1c", "value")
                if c in frame.columns
            ]
        )
        path.with_suffix(".csv").write_bytes(comma.write_csv(separator=";").encode("cp1252"))
    else:
        path.with_suffix(".csv").write_text(frame.write_csv(), encoding="utf-8")


def load(tmp_path: Path, dialect: str):
    plan = plan_for(tmp_path, dialect)
    deliveries = tmp_path / "deliveries"
    deliveries.mkdir()
    write(deliveries / "participants", HEADER, PEOPLE, dialect)
    write(deliveries / "lab_results", LAB_HEADER, LABS, dialect)
    con = new_warehouse(tmp_path / "w.duckdb")
    run = runs.start(con, plan.contract_id, plan.hash)
    summaries = {}
    for name in ("deltagare", "labb"):
        ingest_source(con, plan, run, name, deliveries, KEY)
        summaries[name] = validate_source(con, plan, run, name)
    return con, plan, run, summaries


@pytest.mark.parametrize("dialect", ["semicolon", "comma", "parquet"])
def test_dialects_load_the_same_rows_and_quarantine_each_defect_with_its_rule(tmp_path, dialect):
    con, plan, run, summaries = load(tmp_path, dialect)
    try:
        people, labs = summaries["deltagare"], summaries["labb"]
        assert (people.delivered, people.loaded, people.quarantined) == (7, 2, 5)
        assert people.by_rule == {
            "covariate_not_a_number": 1,
            "exit_without_reason": 1,
            "invalid_date": 1,
            "invalid_personnummer": 1,
            "treated_not_0_1": 1,
        }
        assert (labs.delivered, labs.loaded, labs.quarantined) == (8, 3, 5)
        assert labs.by_rule == {
            "duplicate_row": 1,
            "missing_field": 1,
            "unknown_analyte": 1,
            "out_of_range": 1,
            "unknown_unit": 1,
        }
        staged = staged_generic(con, plan, run, "deltagare").sort("_line")
        assert staged["baseline_hba1c"].to_list() == [44.5, 46.0]
        assert staged["clinic"].to_list() == ["vc_a", "vc_b"]
        assert staged["sex"].to_list() == ["F", "M"] and staged["treated"].to_list() == [1, 0]
        assert staged["person_id"][0] != PNR and len(staged["person_id"][0]) >= 32
        lab = warehouse.read_table(
            con,
            "SELECT sample_date, conversion, value, unit FROM work.staging_lab_results "
            "ORDER BY _line",
        )
        assert lab["conversion"].to_list() == ["ifcc", "ngsp", "mono_s"]
        assert lab["value"].to_list() == [44.0, 48.0, 47.0]
        assert set(lab["unit"]) == {"mmol/mol"}
        # nothing identity-like in clear anywhere: raw, staging, quarantine
        for table in ("work.raw_participants", "work.staging_participants", "work.quarantine_rows"):
            dump = json.dumps(
                warehouse.read_table(con, f"SELECT * FROM {table}").rows(), default=str
            )
            assert "19650312" not in dump and "650312" not in dump, table
    finally:
        con.close()


STATUS = [
    ("e1", "2024-02-01", "arbetslös", None),
    ("e1", "2024-03-01", "employed", "21500.50"),
    ("e1", "2024-03-15", "employed", "100"),  # month_not_first_day
    ("e1", "2024-04-01", "på månen", None),  # unknown_status
    ("e1", "2024-05-01", "employed", "-5"),  # negative_earnings
    ("e1", "2024-06-01", "employed", "12.345"),  # earnings_more_than_two_decimals
    ("e1", "2024-02-01", "arbetslös", None),  # duplicate_row
    ("e1", "2024-13-01", "employed", None),  # invalid_date
]


@pytest.mark.parametrize("decimal", [".", ","])
def test_employment_status_quarantines_each_defect_with_its_file_line(decimal):
    """Row checks on the raw text rows (every file format reaches them as text), with the
    earnings' decimal point or comma."""
    from utfall.kinds import employment_status
    from utfall.validate import validate_person_frame

    source = {"kind": "employment_status", "format": "csv"}
    raw = pl.DataFrame(
        [list(r) for r in STATUS],
        schema=["person_id", "month", "status", "earnings"],
        orient="row",
    ).with_columns(
        pl.lit("f.csv").alias("_file"),
        pl.int_range(2, len(STATUS) + 2, dtype=pl.Int64).alias("_line"),
        pl.lit(None, dtype=pl.String).alias("pnr_problem"),
    )
    raw = raw.with_columns(pl.col("earnings").str.replace(".", decimal, literal=True))
    assert employment_status.COLUMNS["earnings"] is False
    valid, quarantined = validate_person_frame(source, raw)
    assert valid.height + quarantined.height == len(STATUS)
    assert valid["status"].to_list() == ["unemployed", "employed"]
    assert [str(e) for e in valid["earnings"].to_list()] == ["None", "21500.50"]
    assert quarantined["rule"].to_list() == [
        "month_not_first_day",
        "unknown_status",
        "negative_earnings",
        "earnings_more_than_two_decimals",
        "duplicate_row",
        "invalid_date",
    ]
    assert quarantined["line"].to_list() == [4, 5, 6, 7, 8, 9]
