"""One distribution whose only top-level name is `utfall`, with the card's folders, the
example plans and the plan's JSON Schema inside it; installed in a fresh environment,
`utfall demo` works from an empty folder and writes only there."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from utfall import paths

ROOT = Path(__file__).resolve().parent.parent
UV = Path(sys.executable).with_name("uv")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [str(UV), "build", "--wheel", "--quiet", "-o", str(out), str(ROOT)],
        check=True,
        timeout=300,
    )
    (built,) = out.glob("utfall-*.whl")
    return built


def test_the_wheel_holds_only_utfall(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"utfall", wheel.name.split("-py3")[0] + ".dist-info"}
    # nothing of the card's folders is lost on the way: every module and plan is inside
    for folder, inside in (
        ("assets", "utfall/assets"),
        ("pipelines", "utfall/pipelines"),
        ("schemas", "utfall/schemas"),
        ("data/plans", "utfall/example_plans"),
    ):
        files = [p for p in (ROOT / folder).iterdir() if p.suffix in (".py", ".json", ".yaml")]
        assert files, folder
        for p in files:
            assert f"{inside}/{p.name}" in names, p
    assert not [n for n in names if n.endswith(".pyc") or "/data/" in n or n.startswith("tests")]


def test_paths_follow_utfall_home_or_the_working_directory(tmp_path, monkeypatch):
    for env in ("UTFALL_HOME", "UTFALL_WAREHOUSE", "UTFALL_PLANS", "UTFALL_DELIVERIES"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.chdir(tmp_path)
    assert paths.warehouse().resolve() == tmp_path / "data" / "warehouse.duckdb"
    assert paths.plans_dir() == paths.EXAMPLE_PLANS  # no data/plans here: the examples
    (tmp_path / "data" / "plans").mkdir(parents=True)
    assert paths.plans_dir().resolve() == tmp_path / "data" / "plans"
    monkeypatch.setenv("UTFALL_HOME", str(tmp_path / "home"))
    assert paths.deliveries_root() == tmp_path / "home" / "data" / "deliveries"
    assert paths.reports_root() == tmp_path / "home" / "data" / "reports"
    from utfall.cli import REPORTS_ROOT  # the old name, now following UTFALL_HOME

    assert REPORTS_ROOT == tmp_path / "home" / "data" / "reports"
    monkeypatch.setenv("UTFALL_WAREHOUSE", str(tmp_path / "elsewhere.duckdb"))
    assert paths.warehouse() == tmp_path / "elsewhere.duckdb"
    assert paths.EXAMPLE_PLAN.is_file()


@pytest.mark.slow
def test_install_into_a_fresh_venv_then_demo_in_an_empty_folder(wheel, tmp_path):
    """`pip install .` (here uv, the same build from the source tree) into a new venv, with
    the locked versions; then `utfall demo` where nothing exists yet."""
    venv = tmp_path / "venv"
    subprocess.run([str(UV), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    install = [str(UV), "pip", "install", "--quiet", "--python", str(python)]
    subprocess.run(
        [*install, "-c", str(ROOT / "requirements.lock"), str(ROOT)], check=True, timeout=600
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UTFALL_", "PYTHON"))}
    env["UTFALL_PSEUDONYM_KEY"] = "test-key-not-secret-0123456789abcdef"
    demo = subprocess.run(
        [str(venv / "bin" / "utfall"), "demo", "--employees", "1500"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stderr[-2000:]
    contract = "demokommun-korttidssjuk-2025"
    assert (empty / "data" / "warehouse.duckdb").is_file()
    assert (empty / "data" / "reports" / contract / "report.html").is_file()
    assert (empty / "data" / "deliveries" / contract / "roster.csv").is_file()
    site = subprocess.run(
        [str(python), "-c", "import utfall, sys; print(utfall.__file__)"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    package = Path(site).parent
    assert not (package / "data").exists() and not list(package.rglob("*.duckdb"))
    assert (package / "example_plans" / "botkyrka_sick_leave.yaml").is_file()
    # no generic top-level names, and the Dagster definitions load from the install
    leak = subprocess.run(
        [str(python), "-c", "import assets"], cwd=empty, env=env, capture_output=True
    )
    assert leak.returncode != 0
    defs = subprocess.run(
        [
            str(python),
            "-c",
            "from utfall.pipelines.definitions import defs; "
            "print(sorted({k.to_user_string().split('/')[0] for k in defs.resolve_asset_graph()"
            ".get_all_asset_keys()}))",
        ],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert defs.returncode == 0, defs.stderr[-2000:]
    # every example plan shipped as package data has its graph, the demo's among them
    assert contract in defs.stdout and defs.stdout.count("'") >= 2 * 4, defs.stdout
