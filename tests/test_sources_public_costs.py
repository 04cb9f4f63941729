"""The source kind `public_costs` (utfall/kinds/public_costs.py): loaded from both Swedish CSV
dialects and Parquet to the same exact staged amounts (DECIMAL(18,2)), each defect class
quarantined with its rule and its file line, delivered = loaded + quarantined, identity
numbers pseudonymised before anything is stored."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
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
from utfall.validate import validate_source
from utfall.warehouse import runs

KEY = b"k" * 32
CHECK = int(luhn_digit("650312238"))
PNR = f"19650312-238{CHECK}"
BAD_PNR = f"19650312-238{(CHECK + 1) % 10}"
HEADER = ["person_id", "month", "cost_type", "amount"]
#: (row, the rule it breaks or None); amounts written with a decimal point, which the
#: semicolon dialect turns into a decimal comma.
COSTS = [
    ((PNR, "2024-02-01", "benefit", "11000.00"), None),
    (("e2", "2024-02-01", "Placement", "14 500.50"), None),  # type lower-cased, space ok
    (("e2", "2024-03-01", "benefit", "-250.25"), None),  # a correction: kept
    (("e2", "2024-03-01", "benefit", "1.1"), None),  # a second row of the month: summed
    (("e3", "2024-02-15", "benefit", "100.00"), "month_not_first_day"),
    (("e3", "2024-02-01", "lottery", "100.00"), "unknown_cost_type"),
    (("e3", "2024-02-01", "benefit", "elvatusen"), "amount_not_a_number"),
    (("e3", "2024-02-01", "benefit", "100.005"), "amount_more_than_two_decimals"),
    (("e3", "2024-02-01", "benefit", None), "missing_field"),
    (("e3", "2024-13-01", "benefit", "100.00"), "invalid_date"),
    ((BAD_PNR, "2024-02-01", "benefit", "100.00"), "invalid_personnummer"),
]


def plan_for(tmp_path: Path, dialect: str) -> Plan:
    data = copy.deepcopy(
        yaml.safe_load((EXAMPLE_PLANS / "employment_soc.yaml").read_text(encoding="utf-8"))
    )
    (source,) = [s for s in data["sources"] if s["kind"] == "public_costs"]
    source["max_quarantine_share"] = 1.0
    if dialect == "parquet":
        source.pop("csv", None)
        source["format"], source["path"] = "parquet", "public_costs.parquet"
    else:
        source["format"], source["path"] = "csv", "public_costs.csv"
        source["csv"] = (
            {"delimiter": ";", "encoding": "cp1252", "decimal": ","}
            if dialect == "semicolon"
            else {"delimiter": ",", "encoding": "utf-8"}
        )
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return load_plan(path)


def write(folder: Path, dialect: str) -> None:
    frame = pl.DataFrame([list(r) for r, _ in COSTS], schema=HEADER, orient="row")
    if dialect == "parquet":
        frame.write_parquet(folder / "public_costs.parquet")
    elif dialect == "semicolon":
        comma = frame.with_columns(pl.col("amount").str.replace(".", ",", literal=True))
        text = comma.write_csv(separator=";")
        (folder / "public_costs.csv").write_bytes(text.encode("cp1252"))
    else:
        (folder / "public_costs.csv").write_text(frame.write_csv(), encoding="utf-8")


@pytest.mark.parametrize("dialect", ["semicolon", "comma", "parquet"])
def test_dialects_load_the_same_exact_amounts_and_quarantine_each_defect(tmp_path, dialect):
    plan = plan_for(tmp_path, dialect)
    deliveries = tmp_path / "deliveries"
    deliveries.mkdir()
    write(deliveries, dialect)
    con = new_warehouse(tmp_path / "w.duckdb")
    try:
        run = runs.start(con, plan.contract_id, plan.hash)
        ingest_source(con, plan, run, "kostnader", deliveries, KEY)
        summary = validate_source(con, plan, run, "kostnader")
        rules = [rule for _, rule in COSTS if rule]
        assert (summary.delivered, summary.loaded, summary.quarantined) == (
            len(COSTS),
            len(COSTS) - len(rules),
            len(rules),
        )
        assert summary.by_rule == dict.fromkeys(rules, 1)
        quarantined = warehouse.read_table(
            con, "SELECT line, rule FROM work.quarantine_rows ORDER BY line"
        )
        # a CSV's header is line 1 (row i of COSTS is line i + 2); a Parquet file's rows count
        # from 1
        first = 1 if dialect == "parquet" else 2
        expected = [(i + first, rule) for i, (_, rule) in enumerate(COSTS) if rule]
        assert quarantined.rows() == expected
        staged = warehouse.read_table(
            con,
            "SELECT person_id, month, cost_type, amount FROM work.staging_public_costs "
            "ORDER BY _line",
        )
        assert str(staged.schema["amount"]) == "Decimal(precision=18, scale=2)"
        assert staged["amount"].to_list() == [
            Decimal("11000.00"),
            Decimal("14500.50"),
            Decimal("-250.25"),
            Decimal("1.10"),
        ]
        assert staged["cost_type"].to_list() == ["benefit", "placement", "benefit", "benefit"]
        assert staged["person_id"][0] != PNR and len(staged["person_id"][0]) >= 32
        assert staged["person_id"][1] == "e2"  # a provider's pseudonym is kept as delivered
        for table in ("work.raw_public_costs", "work.staging_public_costs", "work.quarantine_rows"):
            rows = warehouse.read_table(con, f"SELECT * FROM {table}").rows()
            dump = json.dumps(rows, default=str)
            assert "19650312" not in dump and "650312" not in dump, table
    finally:
        con.close()


def test_the_kind_is_registered_with_its_columns_and_staged_table():
    from utfall.kinds import kinds
    from utfall.plan import PERSON_ID_KINDS, SOURCE_KINDS
    from utfall.warehouse.layout import WORK_TABLES

    assert kinds()["public_costs"].columns == dict.fromkeys(HEADER, True)
    assert SOURCE_KINDS["public_costs"] == dict.fromkeys(HEADER, True)
    assert "public_costs" in PERSON_ID_KINDS
    assert '"amount" DECIMAL(18,2) NOT NULL' in WORK_TABLES["work.staging_public_costs"]


def test_parquet_with_a_decimal_amount_column_loads_exact(tmp_path):
    """A provider's Parquet may type the amount as a decimal (as `utfall simulate` writes
    it): read as its text, it stays exact to the öre."""
    plan = plan_for(tmp_path, "parquet")
    deliveries = tmp_path / "deliveries"
    deliveries.mkdir()
    pl.DataFrame(
        {
            "person_id": ["e1", "e2"],
            "month": ["2024-02-01", "2024-03-01"],
            "cost_type": ["benefit", "placement"],
            "amount": [Decimal("11000.00"), Decimal("-0.05")],
        },
        schema_overrides={"amount": pl.Decimal(18, 2)},
    ).write_parquet(deliveries / "public_costs.parquet")
    con = new_warehouse(tmp_path / "w.duckdb")
    try:
        run = runs.start(con, plan.contract_id, plan.hash)
        ingest_source(con, plan, run, "kostnader", deliveries, KEY)
        assert validate_source(con, plan, run, "kostnader").quarantined == 0
        staged = warehouse.read_table(
            con, "SELECT amount FROM work.staging_public_costs ORDER BY _line"
        )
        assert staged["amount"].to_list() == [Decimal("11000.00"), Decimal("-0.05")]
    finally:
        con.close()
