"""A run waiting for the warehouse lock says so, and gives up with a clear error.

DuckDB's lock is per process, so another process holds it here."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, asset, materialize

from tests.conftest import empty_warehouse_file
from utfall import warehouse
from utfall.pipelines.resources import WarehouseResource

HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def _hold(path: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return empty_warehouse_file(tmp_path / "w.duckdb")


def test_waits_logging_each_try_then_times_out(db, monkeypatch):
    monkeypatch.setattr(warehouse, "LOCK_POLL", 0.2)  # ~5 tries in the 1 s timeout
    proc = _hold(db, 30)
    said: list[str] = []
    try:
        t0 = time.monotonic()
        with pytest.raises(
            warehouse.WarehouseLocked,
            match=r"open for writing in another process; waited \d+ s for its lock",
        ):
            warehouse.connect(db, timeout=1, on_wait=said.append)
        assert 0.95 < time.monotonic() - t0 < 10
    finally:
        proc.kill()
        proc.wait()
    # one line per try, and more than one try (~5 unloaded; a slow open under load makes fewer)
    assert len(said) >= 2 and all("locked by another process; waiting" in s for s in said)
    assert str(db) in said[0]


def test_connects_once_the_other_process_lets_go(db, monkeypatch):
    monkeypatch.setattr(warehouse, "LOCK_POLL", 0.3)
    proc = _hold(db, 1.0)
    said: list[str] = []
    try:
        con = warehouse.connect(db, timeout=30, on_wait=said.append)
        con.close()
    finally:
        proc.wait()
    assert said, "the wait was not reported"


def test_zero_timeout_fails_at_once_and_a_bad_setting_is_named(db, monkeypatch):
    proc = _hold(db, 30)
    try:
        with pytest.raises(warehouse.WarehouseLocked, match="timeout 0 s"):
            warehouse.connect(db, read_only=True, timeout=0, on_wait=pytest.fail)
    finally:
        proc.kill()
        proc.wait()
    monkeypatch.setenv("UTFALL_LOCK_TIMEOUT", "soon")
    with pytest.raises(warehouse.WarehouseError, match=r"\$UTFALL_LOCK_TIMEOUT='soon'"):
        warehouse.connect(db)


def test_a_dagster_run_logs_its_wait_and_fails_clearly(db, monkeypatch):
    monkeypatch.setattr(warehouse, "LOCK_POLL", 0.25)

    @asset(required_resource_keys={"duckdb"})
    def needs_warehouse(context) -> None:
        with context.resources.duckdb.get_connection() as con:
            con.sql("SELECT 1").fetchall()

    proc = _hold(db, 30)
    try:
        instance = DagsterInstance.ephemeral()
        result = materialize(
            [needs_warehouse],
            resources={"duckdb": WarehouseResource(database=str(db), lock_timeout=0.75)},
            instance=instance,
            raise_on_error=False,
        )
    finally:
        proc.kill()
        proc.wait()
    assert not result.success
    logs = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any("locked by another process; waiting" in m for m in logs)
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "waited" in failure.step_failure_data.error.to_string()
