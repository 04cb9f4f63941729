"""Find identity numbers where they should not be, and describe values without showing them.

A delivery must carry personnummer only in its declared identity column, which is
pseudonymised before anything is written. `identity_like_columns` scans the other text
columns for valid Swedish identity numbers (personnummer or samordningsnummer, 10 or 12
digits, with or without separator), so a misplaced or extra identity column is caught
before it reaches the warehouse. `mask` renders a value by its shape only, for the rare
message that must refer to one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import polars as pl

from utfall import personnummer

_MMDD = r"(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01]|6[1-9]|[78][0-9]|9[01])"
#: Cheap pre-filter, a superset of what `personnummer.check` accepts: its forms (outer
#: whitespace allowed, as it strips it) with a possible month and day (day + 60 for a
#: samordningsnummer). Amounts, counts and most other numbers fail it at once.
_CANDIDATE = rf"^\s*(?:[0-9]{{4}}{_MMDD}-?[0-9]{{4}}|[0-9]{{2}}{_MMDD}[-+]?[0-9]{{4}})\s*$"


def identity_like_columns(
    df: pl.DataFrame, reference_year: int, skip: Iterable[str] = ()
) -> dict[str, int]:
    """Per String column not in `skip`: how many values are valid identity numbers.

    Only columns with at least one are returned, in frame order. A value counts when
    `personnummer.check` finds no problem with it (form, date incl. samordningsnummer day
    + 60, Luhn checksum). Work is vectorised: a regex pre-filter, then the full check on
    the distinct candidates of a column only.
    """
    skipped = set(skip)
    columns = [
        name for name, dtype in df.schema.items() if dtype == pl.String and name not in skipped
    ]
    if not columns or df.height == 0:
        return {}
    candidates = df.select(pl.col(columns).str.contains(_CANDIDATE).sum()).row(0, named=True)
    found: dict[str, int] = {}
    for name in columns:
        if not candidates[name]:
            continue
        counts = (
            df.lazy()
            .select(pl.col(name).alias("value"))
            .filter(pl.col("value").str.contains(_CANDIDATE))
            .group_by("value")
            .len()
            .collect()
        )
        valid = personnummer.check(counts["value"], reference_year)["problem"].is_null()
        n = int(counts["len"].filter(valid).sum())
        if n:
            found[name] = n
    return found


_RUN = re.compile(r"\d+|[^\W\d_]+|\s+|.", re.UNICODE)


def mask(value: str | None) -> str:
    """The shape of a value, none of its content: "19811218-9876" -> "<8 digits>-<4 digits>".

    Runs of digits and of letters become their length; runs of whitespace become one
    space; the separators - + . / : are kept; any other character becomes "?". A message
    can then say what kind of value it met without quoting a possible identity number.
    """
    if value is None:
        return "<null>"
    if value == "":
        return "<empty>"
    parts = []
    for run in _RUN.findall(value):
        if run.isdigit():
            parts.append(f"<{len(run)} digit{'s' if len(run) > 1 else ''}>")
        elif run.isalpha():
            parts.append(f"<{len(run)} letter{'s' if len(run) > 1 else ''}>")
        elif run.isspace():
            parts.append(" ")
        elif run in "-+./:":
            parts.append(run)
        else:
            parts.append("?")
    return "".join(parts)
