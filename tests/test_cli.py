"""`utfall simulate` and `utfall run` end to end, as a user runs them: the run of the happy
path and the locked warehouse in a real subprocess; `simulate` and the other error paths
call `cli.main` in-process (same parser, same handlers, same exit codes) to save a Python
start-up each."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from utfall.cli import EXAMPLE_PLAN, main
from utfall.errors import UserError


def _utfall(*args: str, env_key: str, cwd=None) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ, UTFALL_PSEUDONYM_KEY=env_key)
    return subprocess.run(
        [sys.executable, "-m", "utfall.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=cwd,
    )


def _run(tmp_path, deliveries, out, key: str, cwd=None) -> subprocess.CompletedProcess:
    return _utfall(
        "run",
        str(EXAMPLE_PLAN),
        "--deliveries",
        str(deliveries),
        "--warehouse",
        str(tmp_path / "w.duckdb"),
        "--out",
        str(out),
        env_key=key,
        cwd=cwd,
    )


def _run_in_process(tmp_path, deliveries, out, capsys, *, debug: bool = False):
    """`utfall [--debug] run ...` in this process: (exit code, stdout, stderr)."""
    args = ["--debug"] if debug else []
    args += ["run", str(EXAMPLE_PLAN), "--deliveries", str(deliveries)]
    code = main([*args, "--warehouse", str(tmp_path / "w.duckdb"), "--out", str(out)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_simulate_then_run(tmp_path, pseudonym_key, capsys):
    """`utfall run` as a user types it, in a real subprocess into a missing warehouse file
    (it creates it); `utfall simulate` before it through `cli.main` in this process (the same
    parser and handler; the subprocess start-up is the run's to prove). The run is also the
    suite's fresh process running Great Expectations: no progress bar of GX's (or any tqdm
    bar) reaches the output, and nothing is written to the working directory."""
    deliveries = tmp_path / "deliveries"
    sim = main(
        [
            "simulate",
            str(EXAMPLE_PLAN),
            "--out",
            str(deliveries),
            "--employees",
            "1000",
            "--effect",
            "0.15",
            "--seed",
            "7",
        ]
    )
    assert sim == 0, capsys.readouterr().err
    assert (deliveries / "roster.csv").exists() and (deliveries / "sick_leave.csv").exists()
    truth = json.loads((deliveries / "truth.json").read_text())
    assert truth["effect"] == 0.15

    out = tmp_path / "report"
    assert not (tmp_path / "w.duckdb").exists()  # the run creates the warehouse
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    res = _run(tmp_path, str(deliveries), str(out), pseudonym_key, cwd=cwd)
    assert res.returncode == 0, res.stderr
    assert "[6/10] data quality: 10 of 10 expectations met" in res.stderr  # GX ran here
    assert "Calculating Metrics" not in res.stderr + res.stdout
    assert "%|" not in res.stderr  # no tqdm bar of any kind
    assert list(cwd.iterdir()) == []
    assert "[10/10] report and publish" in res.stderr  # progress, one line per step
    assert f"report: {out / 'report.html'}" in res.stdout
    report = json.loads((out / "report.json").read_text())
    pay = report["payment"]
    assert f"proposed payment: {pay['total']} SEK (basis threshold)" in res.stdout
    low, point, high = (p["total"] for p in pay["range"])
    assert f"payment range: {low} at the least favourable end of the interval, {point}" in (
        res.stdout
    )
    effect = report["effects"][0]
    assert effect["outcome"] == "short_term_sick_days"
    assert effect["relative_ci_low"] < -0.15 < effect["relative_ci_high"]
    assert (tmp_path / "w.duckdb").exists()


def test_run_with_missing_deliveries_fails_clearly(tmp_path, capsys):
    code, _, err = _run_in_process(tmp_path, tmp_path / "nowhere", tmp_path / "r", capsys)
    assert code == 2
    assert "the deliveries folder does not exist" in err
    assert "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_run_while_warehouse_is_locked_fails_clearly(
    tmp_path, pseudonym_key, deliveries, monkeypatch
):
    import duckdb

    monkeypatch.setenv("UTFALL_LOCK_TIMEOUT", "0.5")  # it waits for the lock, then gives up
    holder = duckdb.connect(str(tmp_path / "w.duckdb"))  # another writer, e.g. dagster dev
    try:
        res = _run(tmp_path, str(deliveries), str(tmp_path / "r"), pseudonym_key)
    finally:
        holder.close()
    assert res.returncode == 2
    assert "open for writing in another process" in res.stderr and "Traceback" not in res.stderr
    assert "locked by another process; waiting" in res.stderr


def test_debug_shows_the_traceback_otherwise_one_line(tmp_path, capsys):
    nowhere, out = tmp_path / "nowhere", tmp_path / "r"
    code, _, err = _run_in_process(tmp_path, nowhere, out, capsys)
    assert code == 2 and "Traceback" not in err
    assert err.count("utfall: error:") == 1
    # --debug lets the exception out of main (Python then prints its traceback, exit 1).
    with pytest.raises(UserError) as raised:
        _run_in_process(tmp_path, nowhere, out, capsys, debug=True)
    assert type(raised.value).__name__ == "DeliveryError"


def test_short_key_is_one_line_exit_2(tmp_path, deliveries, monkeypatch, capsys):
    monkeypatch.setenv("UTFALL_PSEUDONYM_KEY", "too-short")
    code, out, err = _run_in_process(tmp_path, deliveries, tmp_path / "r", capsys)
    assert code == 2 and "Traceback" not in err
    assert "too-short" not in out + err  # the key is never echoed
