"""`dagster dev -w workspace.yaml` as a user starts it: it serves every contract's graph,
job, sensors and schedule, and materialises a contract through its measure job (driven over
its GraphQL API); `dg check defs` loads the same definitions.

Marked `server` (about a minute; excluded from the default suite):
`python3 scripts/dev.py test -m server`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from utfall.cli import EXAMPLE_PLAN, simulate_deliveries

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.server
CONTRACTS = ("demokommun-korttidssjuk-2025", "andra-kommunen-2025")
STAGES = (
    "raw/roster",
    "raw/sick_leave",
    "staging/roster",
    "staging/sick_leave",
    "staging/data_quality",
    "marts/outcome_panel",
    "marts/effects",
    "marts/payments_proposed",
    "marts/quarter_outcomes",
    "reports/validator_report",
)


def _two_plans(folder: Path) -> Path:
    """The example plan and a second contract: every contract must be served."""
    folder.mkdir()
    (folder / "a.yaml").write_bytes(EXAMPLE_PLAN.read_bytes())
    data = yaml.safe_load(EXAMPLE_PLAN.read_text(encoding="utf-8"))
    data["contract"]["id"] = CONTRACTS[1]
    (folder / "b.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what} (last: {last})")


def test_dagster_dev_loads_and_materialises(tmp_path, pseudonym_key):
    deliveries = tmp_path / "deliveries" / "demokommun-korttidssjuk-2025"
    simulate_deliveries(
        EXAMPLE_PLAN, deliveries, employees=1500, effect=0.12, defect_rate=0.01, seed=None
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    port = _free_port()
    env = dict(
        os.environ,
        DAGSTER_HOME=str(home),
        UTFALL_PLANS=str(_two_plans(tmp_path / "plans")),
        UTFALL_WAREHOUSE=str(tmp_path / "w.duckdb"),
        UTFALL_DELIVERIES=str(deliveries.parent),
        UTFALL_REPORTS=str(tmp_path / "report"),
    )
    dagster = Path(sys.executable).with_name("dagster")
    log = (tmp_path / "dagster.log").open("w")
    proc = subprocess.Popen(
        [str(dagster), "dev", "-w", "workspace.yaml", "-p", str(port), "-h", "127.0.0.1"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        nodes = _wait(
            lambda: _graphql(port, "{ assetNodes { assetKey { path } } }")["data"]["assetNodes"],
            180,
            "the asset graph",
        )
        keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert {f"{c}/{s}" for c in CONTRACTS for s in STAGES} == keys
        repo = _graphql(
            port,
            "{ repositoriesOrError { ... on RepositoryConnection { nodes { name "
            "location { name } jobs { name } sensors { name } schedules { name } } } } }",
        )["data"]["repositoriesOrError"]["nodes"][0]
        for c in CONTRACTS:
            name = c.replace("-", "_")
            assert f"measure_{name}" in {j["name"] for j in repo["jobs"]}
            assert {f"deliveries_{name}", f"cli_runs_{name}"} <= {
                s["name"] for s in repo["sensors"]
            }
            assert f"periodic_{name}" in {s["name"] for s in repo["schedules"]}
        launched = _graphql(
            port,
            'mutation { launchRun(executionParams: { selector: { repositoryLocationName: "'
            + repo["location"]["name"]
            + '", repositoryName: "'
            + repo["name"]
            + '", jobName: "measure_demokommun_korttidssjuk_2025" } }) { __typename '
            "... on LaunchRunSuccess { run { runId } } } }",
        )["data"]["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]

        def finished():
            status = _graphql(
                port, '{ runOrError(runId: "' + run_id + '") { ... on Run { status } } }'
            )["data"]["runOrError"]["status"]
            return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

        assert _wait(finished, 300, "the run to finish") == "SUCCESS"
        assert (tmp_path / "report" / "demokommun-korttidssjuk-2025" / "report.json").exists()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_dg_check_defs(tmp_path):
    """`dg check defs` ([tool.dg] in pyproject.toml) loads the definitions, and names a
    broken plan."""
    venv = Path(sys.executable).parent.parent
    dg = Path(sys.executable).with_name("dg")
    env = dict(os.environ, VIRTUAL_ENV=str(venv), UTFALL_PLANS=str(_two_plans(tmp_path / "p")))
    ok = subprocess.run(
        [str(dg), "check", "defs"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "All definitions loaded successfully" in ok.stdout + ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE_PLAN.read_text(encoding="utf-8").replace("quarterly", "weekly"))
    env["UTFALL_PLAN"] = str(bad)
    broken = subprocess.run(
        [str(dg), "check", "defs"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert broken.returncode != 0 and "bad.yaml" in broken.stdout + broken.stderr
