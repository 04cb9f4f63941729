"""`utfall status`, the progress lines and bar, and every command's --help.

Status is read on copies of the measured example (tests/conftest.py) after changing them the
way real life does: a failed later run, a decision, a report edited by hand, a stale snapshot.
"""

from __future__ import annotations

import io
import json
import shutil

import duckdb
import pytest

from utfall import cli
from utfall.commands import status
from utfall.progress import Progress
from utfall.warehouse import chain

CONTRACT = "demokommun-korttidssjuk-2025"


@pytest.fixture
def setting(demo_warehouse, tmp_path):
    """A copy of the measured example: warehouse, its snapshot link and the report folder."""
    wh = tmp_path / "warehouse.duckdb"
    shutil.copy(demo_warehouse.warehouse, wh)
    reports = tmp_path / "reports"
    shutil.copytree(demo_warehouse.reports, reports / CONTRACT)
    return wh, reports


def _status(wh, reports, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    from contextlib import redirect_stderr, redirect_stdout

    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(["status", "--warehouse", str(wh), "--reports", str(reports), *extra])
    return code, out.getvalue(), err.getvalue()


def test_status_of_the_published_example(setting, demo_warehouse):
    wh, reports = setting
    code, out, _ = _status(wh, reports)
    assert code == 0
    run = demo_warehouse.run_id[:12]
    assert f"contract {CONTRACT}: Demokommun" in out
    assert "baseline 2022-01-01..2024-12-31, measurement 2025-01-01..2025-12-31" in out
    assert f"published    run {run}" in out
    assert "roster/roster.csv:" in out and "accepted" in out
    assert "delivered =" in out and "MISMATCH" not in out
    assert f"report       {reports / CONTRACT}: current (run {run})" in out
    assert "decision     none yet (awaiting the validator)" in out
    assert "1 in all" in out
    # The copy has no snapshot of its own.
    assert "analysts' snapshot" in out and ": missing" in out


def test_status_json_has_the_same_facts(setting, demo_warehouse):
    wh, reports = setting
    code, out, _ = _status(wh, reports, "--json")
    assert code == 0
    doc = json.loads(out)
    (c,) = doc["contracts"]
    assert c["published_run"]["run_id"] == demo_warehouse.run_id
    assert c["report"]["state"] == "current"
    assert {d["source"] for d in c["deliveries"]} == {"roster", "sick_leave"}
    assert all(r["delivered"] == r["loaded"] + r["quarantined"] for r in c["reconciliation"])
    assert len(c["quality"]) >= 5 and c["plan"]["min_cell_size"] == 5


def test_status_after_a_failed_run_a_decision_and_an_edited_report(setting):
    wh, reports = setting
    con = duckdb.connect(str(wh))
    con.execute(
        "INSERT INTO ledger.runs (run_id, contract_id, plan_hash, started_at, finished_at, "
        "status, stage, error) VALUES ('f' || repeat('0', 31), ?, 'sha256:x', "
        "now()::TIMESTAMP + INTERVAL 1 HOUR, now()::TIMESTAMP + INTERVAL 1 HOUR, 'rejected', "
        "'validate roster', 'validate roster: roster.csv line 7: invalid_checksum')",
        [CONTRACT],
    )
    (manifest_sha,) = con.execute(
        "SELECT json_extract_string(c.payload_json, '$.manifest_sha256') FROM ledger.chain c "
        "JOIN ledger.published p ON json_extract_string(c.payload_json, '$.run_id') = p.run_id "
        "WHERE c.kind = 'run'"
    ).fetchall()[0]
    decision = {
        "period": "2025",
        "decision": "approved",
        "amount": "600000.00",
        "currency": "SEK",
        "payment_period": "2025",
        "payment_lines": [{"rule": 0, "kind": "threshold_tiers", "amount": "600000.00"}],
        "manifest_sha256": manifest_sha,
        "signer": "ed25519:abcd",
        "decided_at": "2026-01-15T10:00:00+00:00",
        "reason": "checked",
    }
    chain.append(con, [("decision", CONTRACT, decision)])
    con.close()
    report = reports / CONTRACT / "report.html"
    report.write_text(report.read_text(encoding="utf-8") + "<!-- edited -->", encoding="utf-8")
    code, out, _ = _status(wh, reports)
    assert code == 0
    assert "latest run   f00000000000 rejected at validate roster: " in out
    assert "roster.csv line 7: invalid_checksum" in out
    assert "checks       none recorded for this run" in out
    assert "modified since written: report.html" in out
    assert "decision     approved 600000.00 SEK for 2025" in out
    assert "ed25519:abcd: checked" in out
    assert "                 rule 0 (threshold_tiers): 600000.00" in out
    (approval,) = status.collect(wh, reports)["contracts"][0]["decisions"]
    assert approval["payment_lines"] == [
        {"rule": 0, "kind": "threshold_tiers", "amount": "600000.00"}
    ]
    assert "2 in all" in out


def test_status_says_when_the_snapshot_is_stale(demo_warehouse, tmp_path):
    from utfall import snapshot

    wh = tmp_path / "warehouse.duckdb"
    shutil.copy(demo_warehouse.warehouse, wh)
    con = duckdb.connect(str(wh))
    snapshot.export(con)
    con.close()
    assert status.collect(wh, tmp_path)["snapshot"]["state"] == "current"
    con = duckdb.connect(str(wh))
    con.execute("UPDATE ledger.published SET run_id = 'another'")
    con.close()
    assert status.collect(wh, tmp_path)["snapshot"]["state"] == "stale"


def test_status_errors_are_one_line(tmp_path):
    code, out, err = _status(tmp_path / "none.duckdb", tmp_path)
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0 and "none.duckdb: no warehouse here yet" in err
    (tmp_path / "bad.duckdb").write_bytes(b"not a database" * 100)
    code, _, err = _status(tmp_path / "bad.duckdb", tmp_path)
    assert code == 2 and "bad.duckdb: not a usable DuckDB warehouse file" in err


def test_status_debug_shows_the_traceback(tmp_path):
    """With --debug the error propagates (Python prints its traceback) instead of one line."""
    from utfall.errors import WarehouseError

    with pytest.raises(WarehouseError, match="no warehouse here yet"):
        cli.main(["--debug", "status", "--warehouse", str(tmp_path / "x.duckdb")])


def test_status_of_an_empty_warehouse(tmp_path):
    from utfall import warehouse

    warehouse.connect(tmp_path / "w.duckdb").close()
    code, out, _ = _status(tmp_path / "w.duckdb", tmp_path)
    assert code == 0 and "no runs yet" in out


# ---- --help ------------------------------------------------------------------------------


def _subcommands(parser) -> dict[str, object]:
    """Every (nested) subcommand's parser, by its command line."""
    found = {}
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            for name, sub in choices.items():
                found[name] = sub
                found.update({f"{name} {k}": v for k, v in _subcommands(sub).items()})
    return found


def test_every_command_has_help_naming_its_arguments(capsys):
    parser = cli.build_parser()
    commands = _subcommands(parser)
    assert {"status", "run", "demo", "simulate", "design", "plan show"} <= set(commands)
    for line, sub in commands.items():
        with pytest.raises(SystemExit) as exit_:
            cli.main([*line.split(), "--help"])
        assert exit_.value.code == 0, line
        text = capsys.readouterr().out
        for action in sub._actions:
            if action.dest in ("help",) or isinstance(action.choices, dict):
                continue
            name = (
                action.option_strings[-1]
                if action.option_strings
                else (action.metavar or action.dest)
            )
            assert name in text, (line, name)
            assert action.help, f"utfall {line}: {name} has no help text"


# ---- progress ----------------------------------------------------------------------------


def test_progress_prints_plain_lines_when_not_a_terminal():
    stream = io.StringIO()
    with Progress("run", stream=stream) as bar:
        bar("run abc of x")
        bar("[1/2] ingest roster: 10 rows (0.1 s)")
        bar("[2/2] report: done (0.2 s)")
    assert stream.getvalue() == (
        "run abc of x\n[1/2] ingest roster: 10 rows (0.1 s)\n[2/2] report: done (0.2 s)\n"
    )


def test_progress_draws_a_bar_on_a_terminal_and_erases_it():
    stream = io.StringIO()
    with Progress("run", stream=stream, tty=True) as bar:
        bar("[1/4] one")
        assert bar.bar().startswith("run [" + "#" * 8 + "." * 22 + "] 1/4 ")
        bar("[4/4] four")
        assert "] 4/4" in bar.bar() and "." not in bar.bar().split("]")[0]
    text = stream.getvalue()
    assert "[1/4] one\n" in text and "[4/4] four\n" in text
    assert "\r\x1b[K" in text and text.endswith("\r\x1b[K")  # the bar is gone at the end


def test_simulate_command_reports_each_step(tmp_path, capsys):
    code = cli.main(
        ["simulate", str(cli.EXAMPLE_PLAN), "--out", str(tmp_path), "--employees", "200"]
    )
    assert code == 0
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[0].startswith("[1/3] simulated 200 employees")
    assert lines[1].startswith("[2/3] wrote roster.csv: ") and lines[2].startswith("[3/3] wrote")
    assert "\x1b" not in err  # not a terminal: no bar
