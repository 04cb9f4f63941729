"""The package's plan check skips re-parsing only when the copied plan is the very text
the run's plan was loaded from; any other text is loaded and its hash compared."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from utfall.paths import EXAMPLE_PLAN
from utfall.plan import load_plan
from utfall.replication import _same_text


def test_same_text_only_for_the_loaded_text(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    shutil.copyfile(EXAMPLE_PLAN, path)
    plan = load_plan(path)
    assert _same_text(path, plan)

    path.write_text(EXAMPLE_PLAN.read_text(encoding="utf-8") + "# a comment\n", "utf-8")
    assert not _same_text(path, plan)  # loaded again: same hash, so the package is fine
    assert load_plan(path).hash == plan.hash

    path.write_text(EXAMPLE_PLAN.read_text(encoding="utf-8").replace("0.95", "0.9"), "utf-8")
    assert not _same_text(path, plan)
    assert load_plan(path).hash != plan.hash  # what write_package then refuses

    path.write_bytes(b"\xff\xfe not utf-8")
    assert not _same_text(path, plan)  # load_plan reports the file's problem
    assert not _same_text(tmp_path / "missing.yaml", plan)
    assert not _same_text(path, dataclasses.replace(plan, text_sha256=None))
