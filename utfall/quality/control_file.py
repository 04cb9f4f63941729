"""The provider's control file: what they say they delivered, checked against what arrived.

A control file is a CSV with the header `file,rows,sha256` and one line per delivered file:
its name relative to the deliveries folder, its number of data rows (header excluded) and
the sha256 of its bytes. A cut or swapped file is then caught even when its rows are all
valid. Problems name the file, the line of the control file and both values; they never
echo a line's content (a wrong file given as control file may hold identity numbers).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from utfall.quality.results import ExpectationResult

HEADER = ("file", "rows", "sha256")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COUNT = re.compile(r"^[0-9]+$")


def _name(file: str) -> str:
    """A file name as compared: forward slashes, no leading `./`, no surrounding spaces."""
    name = file.strip().replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


def _read(path: Path) -> tuple[list[tuple[int, list[str]]], list[str]]:
    """The control file's lines as (line number, fields), or the problems that stop reading."""
    label = path.name
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return [], [f"{label}: control file not found in the deliveries folder"]
    except OSError as exc:
        return [], [f"{label}: cannot read the control file: {exc.strerror}"]
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = content[: exc.start].count(b"\n") + 1
        return [], [f"{label}: line {line}: not UTF-8 text (byte {exc.start})"]
    rows: list[tuple[int, list[str]]] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for fields in reader:
            rows.append((reader.line_num, fields))
    except csv.Error as exc:
        return [], [f"{label}: line {reader.line_num}: not readable as CSV ({exc})"]
    if not rows:
        return [], [f"{label}: the control file is empty; expected the header {','.join(HEADER)}"]
    line, header = rows[0]
    if tuple(h.strip().lower() for h in header) != HEADER:
        return [], [
            f"{label}: line {line}: expected the header {','.join(HEADER)} "
            f"({len(header)} field(s) found)"
        ]
    return rows[1:], []


def check_control_file(path: Path, delivered: list[tuple[str, int, str]]) -> list[str]:
    """Problems between the control file at `path` and the `delivered` files (empty: none).

    `delivered` holds (file name relative to the deliveries folder, data rows, sha256) for
    every delivered data file (not the control file itself). Reported: a malformed control
    file (naming the line), a file listed twice, a delivered file the control file does not
    list, a listed file that was not delivered, and a row count or sha256 that differs
    (naming the file and both values).
    """
    label = path.name
    lines, problems = _read(path)
    if problems:
        return problems
    listed: dict[str, tuple[int, int | None, str | None]] = {}
    for line, fields in lines:
        if not any(f.strip() for f in fields):
            continue  # a blank line, e.g. at the end
        where = f"{label}: line {line}"
        if len(fields) != len(HEADER):
            problems.append(
                f"{where}: expected {len(HEADER)} fields ({','.join(HEADER)}), found {len(fields)}"
            )
            continue
        file, rows_text, sha_text = (_name(fields[0]), fields[1].strip(), fields[2].strip())
        if not file:
            problems.append(f"{where}: the file name is empty")
            continue
        if file in listed:
            problems.append(f"{where}: {file} is listed again (first on line {listed[file][0]})")
            continue
        rows = int(rows_text) if _COUNT.match(rows_text) else None
        sha = sha_text.lower() if _SHA256.match(sha_text.lower()) else None
        if rows is None:
            problems.append(f"{where}: rows of {file} is not a whole number")
        if sha is None:
            problems.append(f"{where}: sha256 of {file} is not 64 hexadecimal digits")
        listed[file] = (line, rows, sha)
    arrived = {_name(f): (rows, sha.lower()) for f, rows, sha in delivered}
    for file in sorted(arrived):
        rows, sha = arrived[file]
        if file not in listed:
            problems.append(f"{file}: delivered but not listed in {label}")
            continue
        _, listed_rows, listed_sha = listed[file]
        if listed_rows is not None and listed_rows != rows:
            problems.append(f"{file}: {rows} data rows delivered, {label} says {listed_rows}")
        if listed_sha is not None and listed_sha != sha:
            problems.append(f"{file}: sha256 delivered {sha}, {label} says {listed_sha}")
    for file, (line, _, _) in listed.items():
        if file not in arrived:
            problems.append(f"{file}: listed in {label} (line {line}) but not delivered")
    return problems


def control_file_result(
    path: Path, delivered: list[tuple[str, int, str]], source: str = "deliveries"
) -> ExpectationResult:
    """`check_control_file` as a block-severity result, for the report and raise_if_blocked."""
    problems = check_control_file(path, delivered)
    if problems:
        shown = "; ".join(problems[:3]) + (
            f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        )
        noun = "problem" if len(problems) == 1 else "problems"
        observed = f"{len(problems)} {noun}: {shown}"
    else:
        observed = f"all {len(delivered)} delivered files match {path.name}"
    return ExpectationResult(
        source=source,
        expectation="control_file",
        severity="block",
        success=not problems,
        observed=observed,
        details={"control_file": path.name, "files": len(delivered), "problems": problems},
    )
