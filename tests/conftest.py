"""Shared fixtures: the example plan, a test pseudonymisation key, simulated deliveries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from utfall.cli import EXAMPLE_PLAN, simulate_deliveries
from utfall.plan import load_plan

TEST_KEY = "test-key-not-secret-0123456789abcdef"


@pytest.fixture(autouse=True)
def pseudonym_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("UTFALL_PSEUDONYM_KEY", TEST_KEY)
    # report.pdf costs 3-10 s of Chromium per run; tests/test_report_browser.py prints it.
    monkeypatch.setenv("UTFALL_CHROMIUM", "off")
    return TEST_KEY


@pytest.fixture(scope="session")
def example_plan():
    return load_plan(EXAMPLE_PLAN)


@pytest.fixture(scope="session")
def deliveries(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plan's deliveries: 4 000 employees, 12 % true effect, 1 % defects."""
    out = tmp_path_factory.mktemp("deliveries")
    simulate_deliveries(EXAMPLE_PLAN, out, employees=4000, effect=0.12, defect_rate=0.01, seed=None)
    return out


@pytest.fixture(scope="session")
def truth(deliveries: Path) -> dict:
    return json.loads((deliveries / "truth.json").read_text(encoding="utf-8"))
