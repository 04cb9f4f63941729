"""report.pdf: the report's HTML printed by headless Chromium (Debian's `chromium`).

Chromium lays out the same HTML and print CSS a validator sees in a browser (A4 pages,
repeated table headers, page numbers and a running header from CSS `@page` margin boxes),
so the PDF needs no second template. Chromium is optional: when it is not found the PDF is
not written and the caller is told why (a note, not an error). `$UTFALL_CHROMIUM` names the
binary (or `off` to skip the PDF, as the test suite does to save ~3 s per run); otherwise
`chromium`, `chromium-browser`, `google-chrome` are looked up on PATH.

PDF bytes are not reproducible (Chromium stamps its creation time and the run time is in
the header), so the PDF is listed in the manifest apart from the files a re-run must match.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
TIMEOUT_SECONDS = 120


def find_chromium() -> str | None:
    """Path of a Chromium binary, or None (also when `$UTFALL_CHROMIUM` is `off`)."""
    env = os.environ.get("UTFALL_CHROMIUM", "").strip()
    if env.lower() == "off":
        return None
    if env:
        return shutil.which(env) or (env if Path(env).is_file() else None)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_command(chromium: str, *args: str) -> list[str]:
    """Chromium run headless with no sandbox (it runs as root in containers), no GPU, no
    first-run or network side effects, and a throw-away profile."""
    return [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-sync",
        "--hide-scrollbars",
        *args,
    ]


def html_to_pdf(html_path: Path, pdf_path: Path, chromium: str) -> None:
    """Print `html_path` to `pdf_path` (A4 from the page's own @page CSS, no browser header
    or footer); raise RuntimeError with Chromium's last message when no PDF results."""
    with tempfile.TemporaryDirectory(prefix="utfall-chromium-") as profile:
        cmd = chromium_command(
            chromium,
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf_path}",
            html_path.resolve().as_uri(),
        )
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False
        )
    if proc.returncode != 0 or not pdf_path.exists() or pdf_path.stat().st_size == 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"chromium exited {proc.returncode}: {last}")


def write_pdf(html: str | Callable[[], str], pdf_path: Path) -> dict[str, Any]:
    """Write `pdf_path` from `html` if Chromium is available; return a note for the
    manifest: {"file", "written", "reason"}. Never raises for a missing or failing
    Chromium: the JSON and HTML report stand without the PDF, and the note says why.
    `html` may be a function that renders it: called only when there is a Chromium."""
    note: dict[str, Any] = {"file": pdf_path.name, "written": False, "reason": None}
    chromium = find_chromium()
    if chromium is None:
        off = os.environ.get("UTFALL_CHROMIUM", "").strip().lower() == "off"
        note["reason"] = (
            "skipped (UTFALL_CHROMIUM=off)"
            if off
            else "chromium not found (install Debian's chromium package for report.pdf)"
        )
        return note
    pdf_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_pdf = pdf_path.with_suffix(".pdf.tmp")
    with tempfile.TemporaryDirectory(prefix="utfall-pdf-") as tmp:
        src = Path(tmp) / "report.html"
        src.write_text(html() if callable(html) else html, encoding="utf-8")
        try:
            html_to_pdf(src, tmp_pdf, chromium)
        except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
            tmp_pdf.unlink(missing_ok=True)
            note["reason"] = f"chromium failed: {exc}"
            return note
    tmp_pdf.replace(pdf_path)
    note["written"] = True
    return note
