"""One published example run shared by the validator tests (replication, verify, signing).

Built once per test session (about 10 s: simulation, ingest, validation, data quality,
measurement); each test copies the package and the warehouse, so tampering stays local.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from utfall import pipeline
from utfall.cli import EXAMPLE_PLAN, simulate_deliveries
from utfall.plan import load_plan

EMPLOYEES = 800


@functools.cache
def published() -> Path:
    """A folder with `deliveries/`, `warehouse.duckdb` and the package `report/`."""
    root = Path(tempfile.mkdtemp(prefix="utfall-validator-"))
    atexit.register(shutil.rmtree, root, True)
    simulate_deliveries(
        EXAMPLE_PLAN, root / "deliveries", EMPLOYEES, effect=0.12, defect_rate=0.01, seed=None
    )
    pipeline.run(
        load_plan(EXAMPLE_PLAN),
        root / "warehouse.duckdb",
        root / "deliveries",
        root / "report",
        progress=lambda _msg: None,
    )
    return root


def fresh_copy(tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the published package and its warehouse: (package, warehouse)."""
    src = published()
    package = tmp_path / "elsewhere" / "package"
    shutil.copytree(src / "report", package)
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy2(src / "warehouse.duckdb", warehouse)
    return package, warehouse
