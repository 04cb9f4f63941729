"""Read a source's delivery files into the run's raw rows, pseudonymised, with a ledger entry.

Each file is hashed (sha256) and read with every column as text, so a bad value becomes a
quarantined row later rather than a crashed load. A file that cannot be used at all
(missing, outside the deliveries folder, wrong encoding, ragged, missing or duplicate
columns, no rows, identity numbers in a column that should not hold them) stops the run
with an error naming the file, line and problem, before any row is written; the file is
still entered in the delivery ledger as rejected. Identity numbers are checked and
replaced by a keyed hash in memory; the clear number never reaches DuckDB, and no message
echoes delivered values.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import duckdb
import polars as pl

from utfall import personnummer
from utfall.errors import UserError
from utfall.plan import PERSON_ID_KINDS, SOURCE_KINDS, Plan, source_columns
from utfall.warehouse import insert_rows, transaction
from utfall.warehouse.deliveries import record_received
from utfall.warehouse.layout import (
    GENERIC_RAW_COLUMNS,
    KIND_COLUMNS,
    PERSON_KINDS_WITH_VALUES,
    PERSON_RAW_COLUMNS,
)
from utfall.warehouse.runs import Run

#: Columns every raw row carries for lineage; the identity column becomes `person_id`.
LINEAGE = ("_file", "_line")


class DeliveryError(UserError):
    """A delivery file that cannot be loaded at all; names the file and the problem."""

    def __init__(self, file: Path | str, problem: str):
        self.file = str(file)
        self.problem = problem
        super().__init__(f"{self.file}: {problem}")


@dataclass(frozen=True)
class Delivery:
    """One delivered file as recorded in the ledger (`ledger.deliveries`)."""

    source: str
    file: str
    sha256: str
    bytes: int
    rows: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def delivery_files(source: dict[str, Any], deliveries_dir: Path) -> list[Path]:
    """The files a source's path or glob matches, sorted by name; error when none.

    The pattern must be relative and stay inside the deliveries folder; a match that is a
    symlink pointing outside it is refused, so a plan cannot read arbitrary files.
    """
    pattern = source["path"]
    pure = PurePosixPath(pattern)
    if pure.is_absolute() or ".." in pure.parts or "\\" in pattern or pattern.startswith("~"):
        raise DeliveryError(
            pattern,
            f"source {source['name']!r}: the path must be relative to the deliveries folder "
            "and must not leave it",
        )
    root = deliveries_dir.resolve()
    if not deliveries_dir.is_dir():
        raise DeliveryError(deliveries_dir, "the deliveries folder does not exist")
    files = sorted(p for p in deliveries_dir.glob(pattern) if p.is_file())
    for p in files:
        if not p.resolve().is_relative_to(root):
            raise DeliveryError(
                p, "resolves (through a symlink) to a file outside the deliveries folder"
            )
    if not files:
        raise DeliveryError(
            deliveries_dir / pattern, f"no delivery file for source {source['name']!r}"
        )
    return files


def _read_csv(path: Path, content: bytes, source: dict[str, Any]) -> pl.DataFrame:
    from utfall.csvread import DeliveryFileError, read_csv_text

    opts = source.get("csv", {})
    try:
        df, lines = read_csv_text(
            path,
            content,
            delimiter=opts.get("delimiter", ","),
            encoding=opts.get("encoding", "utf-8"),
            expected_columns=list(source_columns(source).values()),
        )
    except DeliveryFileError as exc:
        raise DeliveryError(path, exc.problem) from None
    return df.with_columns(lines.alias("_line"))


def _read_parquet(path: Path, content: bytes) -> pl.DataFrame:
    try:
        df = pl.read_parquet(io.BytesIO(content))
    except Exception:  # polars raises several kinds for a broken file; never echo content
        raise DeliveryError(path, "not a readable Parquet file (damaged or truncated)") from None
    if len(set(df.columns)) != len(df.columns):  # pragma: no cover - parquet forbids it
        raise DeliveryError(path, "duplicate column names")
    # A timestamp column holding only midnights is a date column (as many exports write
    # dates); as text it would read "2024-01-01 00:00:00.000000" and fail the date rules.
    midnight = [
        name
        for name, dtype in df.schema.items()
        if isinstance(dtype, pl.Datetime) and df[name].drop_nulls().dt.time().eq(dt.time(0)).all()
    ]
    df = df.with_columns([pl.col(c).dt.date() for c in midnight]).with_columns(
        pl.all().cast(pl.String)
    )
    return df.with_row_index("_line", offset=1).with_columns(pl.col("_line").cast(pl.Int64))


def read_delivery(
    path: Path, source: dict[str, Any], reference_year: int
) -> tuple[pl.DataFrame, str, int]:
    """Read one file as text columns renamed to canonical names, with `_line` numbers.

    Returns (frame, sha256, size in bytes). `_line` is the physical 1-based line where the
    record starts (header = line 1) for CSV and the 1-based row for Parquet. Columns other
    than the identity column are scanned for identity numbers: any found block the file.
    """
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise DeliveryError(path, f"cannot read file: {exc.strerror}") from None
    digest = hashlib.sha256(content).hexdigest()
    if source["format"] == "csv":
        df = _read_csv(path, content, source)
    else:
        df = _read_parquet(path, content)
    mapping = source_columns(source)
    delivered = [c for c in df.columns if c != "_line"]
    missing = [d for d in mapping.values() if d not in delivered]
    if missing:
        raise DeliveryError(
            path, f"missing column(s) {', '.join(missing)}; the file has: {', '.join(delivered)}"
        )
    if df.height == 0:
        raise DeliveryError(path, "the file has a header but no data rows")
    canonical = [c for c in SOURCE_KINDS[source["kind"]] if c in mapping]
    canonical += [c for c in mapping if c not in SOURCE_KINDS[source["kind"]]]
    stripped = [pl.col(mapping[c]).str.strip_chars() for c in canonical]
    df = df.select(
        "_line",
        *[
            pl.when(e == "").then(None).otherwise(e).alias(c)
            for e, c in zip(stripped, canonical, strict=True)
        ],
    )
    # A person table's id may hold identity numbers: they are pseudonymised, not refused.
    id_column = "person_id" if source["kind"] in PERSON_ID_KINDS else "personnummer"
    _refuse_identity_numbers(path, df, mapping, reference_year, id_column)
    return df, digest, len(content)


def _refuse_identity_numbers(
    path: Path,
    df: pl.DataFrame,
    mapping: dict[str, str],
    reference_year: int,
    id_column: str = "personnummer",
) -> None:
    from utfall.identity import identity_like_columns

    found = identity_like_columns(df.drop("_line"), reference_year, skip=(id_column,))
    if found:
        cols = ", ".join(
            f"{mapping.get(c, c)} ({n} value{'s' if n != 1 else ''})" for c, n in found.items()
        )
        raise DeliveryError(
            path,
            f"identity numbers found in column(s) that should not hold them: {cols}. "
            "Check the header and the plan's column mapping; nothing was loaded",
        )


def pseudonymise_frame(df: pl.DataFrame, key: bytes, reference_year: int) -> pl.DataFrame:
    """Replace `personnummer` by `person_id` (keyed hash) and `pnr_problem`.

    Valid numbers are hashed in their normalised 12-digit form (so formats agree); invalid
    ones are hashed as delivered, so a quarantined row can still be traced by the provider
    who holds the key, yet no clear number is kept.
    """
    checked = personnummer.check(df["personnummer"], reference_year)
    basis = checked["normalised"].fill_null(df["personnummer"])
    return df.with_columns(
        person_id=personnummer.pseudonymise(basis, key), pnr_problem=checked["problem"]
    ).drop("personnummer")


def pseudonymise_ids(df: pl.DataFrame, key: bytes, reference_year: int) -> pl.DataFrame:
    """A person table's `person_id`: valid identity numbers become the keyed hash of their
    normalised form, as in the other kinds; values shaped like an identity number that are
    not valid ones are hashed as delivered and marked (`pnr_problem`: quarantined as
    invalid_personnummer), so nothing identity-like is kept in clear; any other value is a
    pseudonym the provider made and is kept as delivered."""
    from utfall.identity import _CANDIDATE

    ids = df["person_id"]
    checked = personnummer.check(ids, reference_year)
    shaped = ids.str.contains(_CANDIDATE).fill_null(False)
    valid = checked["problem"].is_null() & ids.is_not_null()
    basis = checked["normalised"].fill_null(ids)
    hashed = personnummer.pseudonymise(basis, key)
    return df.with_columns(
        person_id=pl.when(valid | shaped).then(hashed).otherwise(ids),
        pnr_problem=pl.when(shaped & ~valid).then(checked["problem"]).otherwise(None),
    )


def raw_frame(frames: list[pl.DataFrame], kind: str, variables: list[str] = ()) -> pl.DataFrame:
    """The raw rows in the work table's column order (absent optional columns as null).

    For the generic kinds the plan-named `variables` (outcomes, covariates) are kept as
    delivered text in one JSON object, `values_json` (see utfall.warehouse.layout)."""
    raw = pl.concat(frames, how="vertical")
    if kind in GENERIC_RAW_COLUMNS or kind in PERSON_KINDS_WITH_VALUES:
        raw = raw.with_columns(
            [pl.lit(None, dtype=pl.String).alias(c) for c in variables if c not in raw.columns]
        ).with_columns(pl.struct(list(variables)).struct.json_encode().alias("values_json"))
        fixed = GENERIC_RAW_COLUMNS.get(kind) or PERSON_RAW_COLUMNS[kind]
        cols = [*LINEAGE, "person_id", "pnr_problem", *fixed, "values_json"]
    elif kind in PERSON_RAW_COLUMNS:
        cols = [*LINEAGE, "person_id", "pnr_problem", *PERSON_RAW_COLUMNS[kind]]
    else:
        cols = [*LINEAGE, "person_id", "pnr_problem", *KIND_COLUMNS[kind]]
    return raw.with_columns(
        [pl.lit(None, dtype=pl.String).alias(c) for c in cols if c not in raw.columns]
    ).select(cols)


def ingest_source(
    con: duckdb.DuckDBPyConnection,
    plan: Plan,
    run: Run,
    source_name: str,
    deliveries_dir: Path,
    key: bytes,
) -> list[Delivery]:
    """Load all files of one source as the run's raw rows; ledger them as received.

    Every file is read and checked before anything is written; a file that cannot be used
    is entered in the ledger as rejected and stops the run.
    """
    source = plan.source(source_name)
    reference_year = plan.period("measurement")[1].year
    frames, ledger = [], []
    for path in delivery_files(source, deliveries_dir):
        rel = _relative(path, deliveries_dir)
        try:
            df, digest, size = read_delivery(path, source, reference_year)
        except DeliveryError:
            _ledger_rejected(con, run, source_name, rel, path)
            raise
        frames.append(
            _identities(df, source["kind"], key, reference_year).with_columns(_file=pl.lit(rel))
        )
        ledger.append(Delivery(source_name, rel, digest, size, df.height))
    variables = [c for c in source_columns(source) if c not in SOURCE_KINDS[source["kind"]]]
    raw = raw_frame(frames, source["kind"], variables)
    with transaction(con):
        insert_rows(con, f"work.raw_{source['kind']}", raw, {**run.scope, "source": source_name})
        record_received(con, run, source_name, [d.to_dict() for d in ledger])
    return ledger


def _identities(df: pl.DataFrame, kind: str, key: bytes, reference_year: int) -> pl.DataFrame:
    """Identity numbers replaced by the keyed hash, per kind; a unit panel holds none."""
    if kind in PERSON_ID_KINDS:
        return pseudonymise_ids(df, key, reference_year)
    if kind == "unit_panel":
        return df.with_columns(
            pl.lit(None, dtype=pl.String).alias("person_id"),
            pl.lit(None, dtype=pl.String).alias("pnr_problem"),
        )
    return pseudonymise_frame(df, key, reference_year)


def _ledger_rejected(
    con: duckdb.DuckDBPyConnection, run: Run, source: str, rel: str, path: Path
) -> None:
    """Enter a file that could not be read in the ledger (rows unknown); marked rejected
    when the run is marked failed."""
    try:
        content = path.read_bytes()
    except OSError:
        return
    entry = {
        "file": rel,
        "sha256": hashlib.sha256(content).hexdigest(),
        "bytes": len(content),
        "rows": None,
    }
    with transaction(con):
        record_received(con, run, source, [entry])


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()
