"""Shared fixtures: the example plan, a test pseudonymisation key, simulated deliveries,
and an empty warehouse to copy.

Why the empty-warehouse template: creating a warehouse's layout (~370 DDL statements, 290
of them `COMMENT ON`) costs ~0.19 s, and the suite once created ~125 of them for tests that
only need an empty warehouse of the current layout to put rows in or to `run` into. Each
process (each xdist worker's session) creates one empty warehouse with the real
`warehouse.connect`, so the template *is* the layout, and `empty_warehouse_file` copies it
(0.5 MB, ~0.03 s with opening). A connect to the copy checks its layout version like any
existing warehouse's. Creating a warehouse stays tested on missing paths, directly:
`demo_warehouse` below and the catalogue's clean prior run (a first run into a missing
file), `utfall run` on a fresh path in a subprocess (test_cli::test_simulate_then_run), a
new layout's comments (test_marts) and empty chain (test_ledger_chain), Dagster's resource
on a new file (test_payment_periods_pipeline::test_dagster_job_measures_the_tagged_period).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from utfall.cli import EXAMPLE_PLAN, simulate_deliveries
from utfall.plan import load_plan

TEST_KEY = "test-key-not-secret-0123456789abcdef"

_EMPTY_WAREHOUSE: list[Path] = []


def empty_warehouse_file(path: Path) -> Path:
    """Put an empty warehouse of the current layout at `path` (which must not exist yet) and
    return `path`: a copy of one made by `warehouse.connect` once per process (see the
    module docstring). For `pipeline.run`, `utfall run`, or a connect of the test's own."""
    import atexit
    import shutil
    import tempfile

    from utfall import warehouse

    if not _EMPTY_WAREHOUSE:
        folder = tempfile.mkdtemp(prefix="utfall-empty-warehouse-")
        atexit.register(shutil.rmtree, folder, True)
        template = Path(folder) / "empty.duckdb"
        warehouse.connect(template).close()
        _EMPTY_WAREHOUSE.append(template)
    if path.exists():
        raise FileExistsError(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(_EMPTY_WAREHOUSE[0], path)
    return path


def is_untouched_empty_warehouse(path: Path) -> bool:
    """Whether `path` is byte for byte the empty warehouse `empty_warehouse_file` copies:
    then it holds no row of any table (e.g. a run that stopped before opening it)."""
    import filecmp

    return bool(_EMPTY_WAREHOUSE) and filecmp.cmp(path, _EMPTY_WAREHOUSE[0], shallow=False)


def new_warehouse(path: Path, **kwargs: Any):
    """`warehouse.connect(path)` for a new file, on a copy of the empty warehouse
    (`empty_warehouse_file`): the same layout, without creating it again."""
    from utfall import warehouse

    return warehouse.connect(empty_warehouse_file(path), **kwargs)


@pytest.fixture(scope="session", autouse=True)
def no_pdf_in_shared_fixtures():
    """No report.pdf for the session's and modules' shared runs either (`demo_warehouse`,
    the kill tests' setting, ...): they start before the per-test setting below, and each
    paid a Chromium print (~1.5 s CPU) that no test reads. Tests that print set their own."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UTFALL_CHROMIUM", "off")
        yield


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


@dataclass(frozen=True)
class Measured:
    """A measured example: its warehouse file, report folder, deliveries and run."""

    warehouse: Path
    reports: Path
    deliveries: Path
    run_id: str
    result: Any  # utfall.pipeline.RunResult


@pytest.fixture(scope="session")
def demo_warehouse(example_plan, deliveries, tmp_path_factory) -> Measured:
    """The example plan measured once (4 000 employees) into a missing warehouse file (so
    also a first run creating the layout, not a template copy), shared by every test that
    only reads it: copy the file first to change anything."""
    from utfall.pipeline import run

    root = tmp_path_factory.mktemp("demo_warehouse")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UTFALL_PSEUDONYM_KEY", TEST_KEY)
        result = run(
            example_plan, root / "warehouse.duckdb", deliveries, root / "report", lambda _: None
        )
    return Measured(root / "warehouse.duckdb", root / "report", deliveries, result.run_id, result)


#: Tests outside the default suite, in their own tiers (markers declared in pyproject.toml):
#: `server` starts `dagster dev` (`python3 scripts/dev.py test -m server`); `coverage` runs
#: simulation studies of bias and interval coverage (`... test -m coverage`). Assigned here
#: by (file, test function) so the tiers are one list; a mark on the test itself also works.
TIERS: dict[str, dict[str, set[str] | None]] = {
    "server": {"test_dagster_dev.py": None},  # None: every test in the file
    "coverage": {
        "test_did.py": {
            "test_unbiased_absolute_and_relative",
            "test_coverage_95_and_90",
            "test_event_study_coefficients_cover_the_truth",
            "test_null_effect_coverage_and_false_positive_rate",
            "test_coverage_four_plus_four_units",
            "test_wild_bootstrap_coverage_four_plus_four_units",
            "test_relative_scale_unbiased_where_absolute_is_biased",
        },
        "test_simulation_study.py": {
            "test_level_difference_with_common_shock_biases_the_absolute_scale",
        },
    },
}


#: The default suite's most expensive files, most first (per-file sums of test durations,
#: measured 2026-11-28 on the 2-core machine after the empty-warehouse template).
#: They run first, so the two workers (`scripts/dev.py` passes `--dist loadfile
#: --no-loadscope-reorder`) end together instead of one finishing the largest file alone;
#: a file not listed runs after these, in collection order. Order only, never selection.
HEAVY_FIRST = [
    "test_catalogue.py",
    "test_kill.py",
    "test_example_contracts.py",
    "test_warehouse.py",
    "test_quality.py",
    "test_verify.py",
    "test_metrics.py",
    "test_cli.py",
    "test_simulate_cohorts.py",
    "test_plan.py",
    "test_payment_periods_pipeline.py",
    "test_pipeline.py",
    "test_est_panel_composite.py",
    "test_assets.py",
    "test_signing.py",
    "test_report_browser.py",
    "test_dagster_orchestration.py",
    "test_design.py",
    "test_ingest_validate.py",
    "test_dagster_lock.py",
    "test_marts.py",
    "test_savings_contract.py",
    "test_eligibility.py",
    "test_est_person_aipw_coverage.py",
    "test_ledger_chain.py",
]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept
    for item in items:
        for marker, files in TIERS.items():
            if item.path.name in files:
                names = files[item.path.name]
                if names is None or getattr(item, "originalname", item.name) in names:
                    item.add_marker(getattr(pytest.mark, marker))
