"""Ingest and validation: bad files fail naming file and problem; every row is loaded or
quarantined with its rule, matching exactly the defects the simulator injected."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import new_warehouse
from utfall import warehouse
from utfall.ingest import DeliveryError, ingest_source
from utfall.validate import DeliveryRejected, validate_frame, validate_source
from utfall.warehouse import runs

KEY = b"k" * 32


def _load(con, plan, deliveries: Path):
    run = runs.start(con, plan.contract_id, plan.hash)
    for s in plan.sources:
        ingest_source(con, plan, run, s["name"], deliveries, KEY)
    return [validate_source(con, plan, run, n) for n in ("roster", "sick_leave")]


def _ingest(con, plan, name, deliveries):
    return ingest_source(
        con, plan, runs.start(con, plan.contract_id, plan.hash), name, deliveries, KEY
    )


@pytest.fixture
def con(tmp_path):
    con = new_warehouse(tmp_path / "w.duckdb")
    yield con
    con.close()


@pytest.fixture(scope="module")
def _loaded(example_plan, deliveries, tmp_path_factory):
    """The example deliveries ingested and validated once per module: (file, summaries)."""
    path = tmp_path_factory.mktemp("loaded") / "w.duckdb"
    con = new_warehouse(path)
    try:
        summaries = _load(con, example_plan, deliveries)
    finally:
        con.close()
    return path, summaries


@pytest.fixture
def loaded(_loaded, tmp_path):
    """(connection, [roster, spells] summaries) of the test's own copy of `_loaded`."""
    path, summaries = _loaded
    shutil.copy(path, tmp_path / "loaded.duckdb")
    con = warehouse.connect(tmp_path / "loaded.duckdb")
    yield con, summaries
    con.close()


def test_quarantine_matches_injected_defects(loaded, truth):
    con, (roster, spells) = loaded
    for summary, name in ((roster, "roster"), (spells, "spells")):
        assert summary.delivered == truth["delivered_rows"][name]
        assert summary.loaded == truth["clean_rows"][name]
        assert summary.delivered == summary.loaded + summary.quarantined
    expected = {k: v for k, v in truth["defects"]["spells"].items() if v}
    expected["invalid_personnummer"] = expected.pop("invalid_checksum")
    assert spells.by_rule == dict(sorted(expected.items()))
    assert roster.by_rule == {
        "duplicate_row": truth["defects"]["roster"]["duplicate_row"],
        "invalid_personnummer": truth["defects"]["roster"]["invalid_checksum"],
    }
    recon = warehouse.read_table(
        con,
        "SELECT source, delivered, loaded, quarantined FROM work.reconciliation ORDER BY source",
    )
    assert recon.rows() == [
        ("roster", roster.delivered, roster.loaded, roster.quarantined),
        ("sick_leave", spells.delivered, spells.loaded, spells.quarantined),
    ]


def test_quarantined_rows_name_file_line_and_rule(loaded, deliveries):
    con, _ = loaded
    q = warehouse.read_table(
        con, "SELECT * FROM work.quarantine_rows WHERE rule = 'unknown_extent'"
    )
    assert q.height > 0
    row = q.row(0, named=True)
    assert row["file"] == "sick_leave.csv" and row["line"] >= 2
    assert row["detail"].startswith("extent=")
    # The line number points at the delivered line that broke the rule.
    lines = (deliveries / "sick_leave.csv").read_text().splitlines()
    extent = row["detail"].split("=")[1]
    assert lines[row["line"] - 1].endswith("," + extent)


def test_no_clear_identity_number_in_warehouse(loaded, deliveries):
    con, _ = loaded
    numbers = pl.read_csv(deliveries / "roster.csv", infer_schema=False)["personnummer"]
    sample = set(numbers.head(200).to_list()) | {n.replace("-", "") for n in numbers.head(200)}
    tables = con.sql(
        "SELECT table_schema, table_name, list(column_name ORDER BY ordinal_position) "
        "FROM information_schema.columns WHERE data_type = 'VARCHAR' GROUP BY ALL"
    ).fetchall()
    assert tables
    for schema, table, columns in tables:
        # Every text column's distinct values in one scan of the table (or view).
        texts = ", ".join(f'"{c}"' for c in columns)
        values = warehouse.read_table(
            con, f"SELECT DISTINCT unnest([{texts}]) AS v FROM {schema}.{table}"
        )
        text = " ".join(str(v) for v in values.to_series().to_list())
        assert not any(n in text for n in sample), f"clear personnummer in {schema}.{table}"


def test_reingest_gives_the_same_rows(loaded, example_plan, deliveries):
    con, _ = loaded  # loaded once ...
    _load(con, example_plan, deliveries)  # ... and again
    sql = (
        "SELECT * EXCLUDE (run_id) FROM work.staging_sick_leave_spells WHERE run_id = ("
        "SELECT run_id FROM ledger.runs ORDER BY started_at {} LIMIT 1) ORDER BY _file, _line"
    )
    first = warehouse.read_table(con, sql.format("ASC"))
    again = warehouse.read_table(con, sql.format("DESC"))
    assert first.height > 0 and first.equals(again)
    # The ledger keeps every receipt: two runs x two files.
    assert warehouse.scalar(con, "SELECT count(*) FROM ledger.deliveries") == 4


def _copy(deliveries: Path, tmp_path: Path) -> Path:
    out = tmp_path / "d"
    shutil.copytree(deliveries, out)
    return out


def test_missing_file(con, example_plan, deliveries, tmp_path):
    d = _copy(deliveries, tmp_path)
    (d / "sick_leave.csv").unlink()
    with pytest.raises(DeliveryError, match="no delivery file for source 'sick_leave'"):
        _ingest(con, example_plan, "sick_leave", d)


def test_missing_column_names_file_and_columns(con, example_plan, deliveries, tmp_path):
    d = _copy(deliveries, tmp_path)
    f = d / "sick_leave.csv"
    f.write_text(f.read_text().replace("extent", "omfattning", 1))
    with pytest.raises(DeliveryError) as err:
        _ingest(con, example_plan, "sick_leave", d)
    assert str(f) in str(err.value) and "missing column(s) extent" in str(err.value)
    assert warehouse.scalar(con, "SELECT count(*) FROM work.raw_sick_leave_spells") == 0


def test_wrong_encoding_names_line(con, example_plan, deliveries, tmp_path):
    d = _copy(deliveries, tmp_path)
    f = d / "roster.csv"
    lines = f.read_bytes().split(b"\n")
    lines[3] = lines[3] + b"\xe5"  # a Latin-1 byte in a UTF-8 file
    f.write_bytes(b"\n".join(lines))
    with pytest.raises(DeliveryError, match=r"line 4: not valid utf-8"):
        _ingest(con, example_plan, "roster", d)


def test_header_only_file(con, example_plan, deliveries, tmp_path):
    d = _copy(deliveries, tmp_path)
    f = d / "sick_leave.csv"
    f.write_text(f.read_text().splitlines()[0] + "\n")
    with pytest.raises(DeliveryError, match="no data rows"):
        _ingest(con, example_plan, "sick_leave", d)


def test_several_files_match_a_glob(con, example_plan, deliveries, tmp_path):
    d = _copy(deliveries, tmp_path)
    text = (d / "sick_leave.csv").read_text().splitlines()
    (d / "sick_leave.csv").write_text("\n".join(text[:1000]) + "\n")
    (d / "sick_leave_2.csv").write_text("\n".join(text[:1] + text[1000:]) + "\n")
    ledger = _ingest(con, example_plan, "sick_leave", d)
    assert [x.file for x in ledger] == ["sick_leave.csv", "sick_leave_2.csv"]
    assert sum(x.rows for x in ledger) == len(text) - 1


def test_delivery_over_quarantine_limit_is_rejected(con, example_plan, deliveries, tmp_path):
    d = _copy(deliveries, tmp_path)
    f = d / "sick_leave.csv"
    lines = f.read_text().splitlines()
    bad = [lines[0]] + [
        ln.rsplit(",", 1)[0] + ",60" if i % 10 == 0 else ln for i, ln in enumerate(lines[1:])
    ]
    f.write_text("\n".join(bad) + "\n")
    with pytest.raises(DeliveryRejected, match=r"above the plan's limit of 5.0%.*unknown_extent"):
        _load(con, example_plan, d)
    # Nothing is published; the run's quarantine is kept for inspection.
    assert warehouse.scalar(con, "SELECT count(*) FROM staging.sick_leave_spells") == 0
    assert (
        warehouse.scalar(con, "SELECT count(*) FROM quarantine.by_run WHERE source = 'sick_leave'")
        > 0
    )


def _spells(**cols) -> pl.DataFrame:
    n = len(cols["person_id"])
    base = {"_file": ["f.csv"] * n, "_line": list(range(2, n + 2)), "pnr_problem": [None] * n}
    return pl.DataFrame({**base, **cols}, schema_overrides={"pnr_problem": pl.String})


def test_each_spell_rule_on_a_small_example():
    raw = _spells(
        person_id=["a", "a", "a", "b", "c", "a", "a", None],
        spell_start=[
            "2023-01-01",
            "2023-01-03",
            "2023-02-01",
            "2023-13-01",
            "2023-01-05",
            "2023-01-01",
            "2023-03-01",
            "2023-03-01",
        ],
        spell_end=[
            "2023-01-05",
            "2023-01-04",
            "2023-01-20",
            "2023-01-01",
            "2023-01-06",
            "2023-01-05",
            "2023-03-02",
            "2023-03-02",
        ],
        extent=["100", "100", "50", "100", "60", "100", "100", "100"],
    )
    valid, q = validate_frame("sick_leave_spells", raw, pl.Series(["a", "b", "c"]))
    assert valid["_line"].to_list() == [2, 8]
    assert dict(zip(q["line"], q["rule"], strict=True)) == {
        3: "overlapping_spell",
        4: "end_before_start",
        5: "invalid_spell_start",
        6: "unknown_extent",
        7: "duplicate_row",
        9: "missing_person_id",
    }


def test_unknown_person_is_quarantined():
    raw = _spells(
        person_id=["a", "zz"],
        spell_start=["2023-01-01"] * 2,
        spell_end=["2023-01-02"] * 2,
        extent=["100"] * 2,
    )
    valid, q = validate_frame("sick_leave_spells", raw, pl.Series(["a"]))
    assert valid.height == 1 and q["rule"].to_list() == ["unknown_person"]


def test_roster_rules_on_a_small_example():
    raw = pl.DataFrame(
        {
            "_file": ["r.csv"] * 5,
            "_line": [2, 3, 4, 5, 6],
            "person_id": ["a", "b", "a", "c", "d"],
            "pnr_problem": [None, None, None, None, "invalid_date"],
            "birth_year": ["1970", "19x0", "1970", "1980", "1980"],
            "sex": ["K", "M", "K", "X", "K"],
            "unit_id": ["U1", "U1", "U2", "U1", "U1"],
            "employment_extent": ["100", "50", "100", "100", "100"],
            "employed_from": ["2020-01-01", "2020-01-01", "2020-01-01", "2020-01-01", "2020-01-01"],
            "employed_to": [None, "2019-01-01", None, None, None],
        },
        schema_overrides={"pnr_problem": pl.String, "employed_to": pl.String},
    )
    valid, q = validate_frame("employee_roster", raw)
    assert valid["person_id"].to_list() == ["a"]
    assert dict(zip(q["line"], q["rule"], strict=True)) == {
        3: "invalid_birth_year",
        4: "overlapping_employment",
        5: "invalid_sex",
        6: "invalid_personnummer",
    }
    assert "employed_to_before_employed_from" in q.filter(pl.col("line") == 3)["rules"][0]


def _roster(rows: list[tuple]) -> pl.DataFrame:
    """Roster rows (person, unit, extent, from, to) of valid persons, lines 2, 3, ..."""
    n = len(rows)
    person, unit, extent, start, end = (list(c) for c in zip(*rows, strict=True))
    return pl.DataFrame(
        {
            "_file": ["r.csv"] * n,
            "_line": list(range(2, n + 2)),
            "person_id": person,
            "pnr_problem": [None] * n,
            "birth_year": ["1970"] * n,
            "sex": ["K"] * n,
            "unit_id": unit,
            "employment_extent": extent,
            "employed_from": start,
            "employed_to": end,
        },
        schema_overrides={"pnr_problem": pl.String, "employed_to": pl.String},
    )


def test_employment_history_is_valid():
    # A transfer (U1 -> U2 the next day), a change of extent, and re-employment after a gap:
    # rows of one person that do not overlap are all kept, in any delivery order.
    raw = _roster(
        [
            ("a", "U2", "100", "2024-03-16", None),
            ("a", "U1", "100", "2020-01-01", "2024-03-15"),
            ("b", "U1", "100", "2020-01-01", "2024-01-31"),
            ("b", "U1", "50", "2024-02-01", "2024-06-30"),
            ("b", "U1", "75", "2024-09-01", None),
        ]
    )
    valid, q = validate_frame("employee_roster", raw)
    assert q.height == 0
    assert valid["_line"].to_list() == [2, 3, 4, 5, 6]


def test_overlapping_employment_is_quarantined():
    raw = _roster(
        [
            ("a", "U1", "100", "2020-01-01", "2024-03-15"),  # kept: first by employed_from
            ("a", "U2", "100", "2024-03-15", None),  # starts on a's last U1 day: overlaps
            ("a", "U1", "100", "2020-01-01", "2024-03-15"),  # exact copy: duplicate_row
            ("b", "U2", "50", "2022-12-31", None),  # delivered first, starts later: overlaps
            ("b", "U1", "100", "2021-01-01", "2022-12-31"),  # kept
            ("b", "U1", "100", "2022-06-01", "2022-06-30"),  # inside the kept row: overlaps
            ("c", "U1", "100", "2020-01-01", None),  # still employed: kept
            ("c", "U2", "100", "2030-01-01", "2030-12-31"),  # after an open end: overlaps
        ]
    )
    valid, q = validate_frame("employee_roster", raw)
    assert valid["_line"].to_list() == [2, 6, 8]
    assert dict(zip(q["line"], q["rule"], strict=True)) == {
        3: "overlapping_employment",
        4: "duplicate_row",
        5: "overlapping_employment",
        7: "overlapping_employment",
        9: "overlapping_employment",
    }
    # An exact copy breaks only duplicate_row (it is not also called overlapping).
    assert q.filter(pl.col("line") == 4)["rules"].to_list() == ["duplicate_row"]
