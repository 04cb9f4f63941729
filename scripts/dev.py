#!/usr/bin/env python3
"""Set up `.venv` from the lock file, then run the demo or the tests.

    python3 scripts/dev.py demo   # install; simulate the example contract, run it, print the report
    python3 scripts/dev.py test   # install; ruff check + format check, then the default test
                                  # suite on two workers (extra args go to pytest)
    python3 scripts/dev.py test -m slow       # the slow scale tests
    python3 scripts/dev.py test -m coverage   # simulation studies of bias and coverage
    python3 scripts/dev.py test -m server     # starts `dagster dev` and drives its UI

Needs only Python 3.11+ and access to PyPI. The environment is rebuilt when
requirements.lock changes; uv (pinned) installs the locked versions with compiled bytecode.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
LOCK = ROOT / "requirements.lock"
STAMP = VENV / ".utfall-lock-sha256"
UV_VERSION = "0.13.8"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def _run(*cmd: str | Path) -> None:
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def ensure_env() -> None:
    """Create or refresh .venv so it holds exactly the locked packages and this project."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this script may run on any python3
        sys.exit(f"utfall needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    want = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == want and (BIN / "utfall").exists():
        return
    print(f"setting up {VENV} from {LOCK.name} ...", file=sys.stderr, flush=True)
    if not (BIN / "python").exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    uv = BIN / "uv"
    if not uv.exists():
        _run(
            BIN / "python",
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"uv=={UV_VERSION}",
        )
    _run(uv, "pip", "sync", "--quiet", "--python", BIN / "python", "--compile-bytecode", LOCK)
    _run(uv, "pip", "install", "--quiet", "--python", BIN / "python", "--no-deps", "-e", ".")
    STAMP.write_text(want + "\n")


def _workers(args: list[str]) -> list[str]:
    """Two pytest-xdist workers (the machine has two cores), unless the caller chose
    (`-n 0` runs in one process, e.g. to debug with `-x --pdb`). Whole files go to one
    worker: module fixtures (a measured warehouse, the catalogue's runs) are built once.
    Files go out in collection order, the most expensive first (tests/conftest.py's
    HEAVY_FIRST), not xdist's default of the most tests first, so the workers end together."""
    chosen = any(a == "-n" or a.startswith(("-n", "--numprocesses")) for a in args)
    return [] if chosen else ["-n", "2", "--dist", "loadfile", "--no-loadscope-reorder"]


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "setup"):
        print(__doc__, file=sys.stderr)
        return 2
    ensure_env()
    env = dict(os.environ)
    if argv[0] == "demo":
        return subprocess.run(
            [str(BIN / "utfall"), "demo", *argv[1:]], cwd=ROOT, env=env
        ).returncode
    if argv[0] == "test":
        # Lint first (seconds): CI runs this same command, so style is checked there too.
        paths = ["utfall", "assets", "pipelines", "schemas", "tests", "scripts"]
        for lint in (["check", "--quiet"], ["format", "--check", "--quiet"]):
            code = subprocess.run([str(BIN / "ruff"), *lint, *paths], cwd=ROOT, env=env).returncode
            if code:
                print(f"ruff {lint[0]} failed (see above)", file=sys.stderr)
                return code
        # Bytecode caches (git-ignored __pycache__) for the project and pytest's rewritten
        # test modules: with PYTHONDONTWRITEBYTECODE=1 (set on this machine) every worker and
        # every `utfall` subprocess the tests start compiles them again (~3 s CPU a worker).
        test_env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        return subprocess.run(
            [str(BIN / "python"), "-m", "pytest", *_workers(argv[1:]), *argv[1:]],
            cwd=ROOT,
            env=test_env,
        ).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
