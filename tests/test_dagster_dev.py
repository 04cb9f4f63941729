"""`dagster dev -w workspace.yaml` as a user starts it: it loads, shows the asset graph and
materialises it through the measure_contract job (driven over its GraphQL API)."""

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

from utfall.cli import EXAMPLE_PLAN, simulate_deliveries

ROOT = Path(__file__).resolve().parent.parent


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
        prefix = "demokommun-korttidssjuk-2025/"
        assert {
            prefix + "raw/roster",
            prefix + "staging/sick_leave",
            prefix + "reports/validator_report",
        } <= keys
        repo = _graphql(
            port,
            "{ repositoriesOrError { ... on RepositoryConnection { nodes { name "
            "location { name } } } } }",
        )["data"]["repositoriesOrError"]["nodes"][0]
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
