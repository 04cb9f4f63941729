"""Read a source's delivery files into the raw layer, pseudonymised, with a ledger entry.

Each file is hashed (sha256) and read with every column as text, so a bad value becomes a
quarantined row later rather than a crashed load. A file that cannot be used at all
(missing, wrong encoding, missing columns, no rows) stops the run with an error naming
the file and the problem, before anything is written. Identity numbers are checked and
replaced by a keyed hash in memory; the clear number never reaches DuckDB.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from utfall import personnummer, warehouse
from utfall.plan import SOURCE_KINDS, Plan

#: Columns every raw table carries for lineage; the identity column becomes `person_id`.
LINEAGE = ("_file", "_line")


class DeliveryError(ValueError):
    """A delivery file that cannot be loaded at all; names the file and the problem."""

    def __init__(self, file: Path | str, problem: str):
        self.file = str(file)
        self.problem = problem
        super().__init__(f"{self.file}: {problem}")


@dataclass(frozen=True)
class Delivery:
    """One delivered file as recorded in the ledger (`raw.deliveries`)."""

    source: str
    file: str
    sha256: str
    bytes: int
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def delivery_files(source: dict[str, Any], deliveries_dir: Path) -> list[Path]:
    """The files a source's path or glob matches, sorted by name; error when none."""
    pattern = source["path"]
    files = sorted(p for p in deliveries_dir.glob(pattern) if p.is_file())
    if not files:
        raise DeliveryError(
            deliveries_dir / pattern, f"no delivery file for source {source['name']!r}"
        )
    return files


def read_delivery(path: Path, source: dict[str, Any]) -> tuple[pl.DataFrame, str, int]:
    """Read one file as text columns renamed to canonical names, with `_line` numbers.

    Returns (frame, sha256, size in bytes). `_line` is the 1-based line in the file
    (header = line 1) for CSV and the 1-based row for Parquet.
    """
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise DeliveryError(path, f"cannot read file: {exc.strerror}") from None
    digest = hashlib.sha256(content).hexdigest()
    fmt = source["format"]
    if fmt == "csv":
        opts = source.get("csv", {})
        encoding = opts.get("encoding", "utf-8")
        try:
            text = content.decode(encoding)
        except UnicodeDecodeError as exc:
            line = content[: exc.start].count(b"\n") + 1
            raise DeliveryError(
                path,
                f"line {line}: not valid {encoding} text (byte {exc.start}); "
                "set sources[].csv.encoding in the plan",
            ) from None
        try:
            df = pl.read_csv(
                io.StringIO(text.lstrip("\ufeff")),
                separator=opts.get("delimiter", ","),
                infer_schema=False,
            )
        except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as exc:
            raise DeliveryError(path, f"not a readable CSV file: {exc}") from None
        line_offset = 2
    else:
        try:
            df = pl.read_parquet(io.BytesIO(content))
        except Exception as exc:  # polars raises several kinds for a broken file
            raise DeliveryError(path, f"not a readable Parquet file: {exc}") from None
        df = df.with_columns(pl.all().cast(pl.String))
        line_offset = 1
    mapping: dict[str, str] = source["columns"]
    missing = [delivered for delivered in mapping.values() if delivered not in df.columns]
    if missing:
        raise DeliveryError(
            path, f"missing column(s) {', '.join(missing)}; the file has: {', '.join(df.columns)}"
        )
    if df.height == 0:
        raise DeliveryError(path, "the file has a header but no data rows")
    canonical = [c for c in SOURCE_KINDS[source["kind"]] if c in mapping]
    df = df.select([pl.col(mapping[c]).str.strip_chars().alias(c) for c in canonical]).with_columns(
        pl.when(pl.all() == "").then(None).otherwise(pl.all()).name.keep()
    )
    df = df.with_row_index("_line", offset=line_offset).with_columns(pl.col("_line").cast(pl.Int64))
    return df, digest, len(content)


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


def ingest_source(
    con: duckdb.DuckDBPyConnection, plan: Plan, source_name: str, deliveries_dir: Path, key: bytes
) -> list[Delivery]:
    """Load all files of one source into `raw.<source>`, replacing what was there."""
    source = plan.source(source_name)
    reference_year = plan.period("measurement")[1].year
    frames, ledger = [], []
    for path in delivery_files(source, deliveries_dir):
        df, digest, size = read_delivery(path, source)
        rel = _relative(path, deliveries_dir)
        frames.append(pseudonymise_frame(df, key, reference_year).with_columns(_file=pl.lit(rel)))
        ledger.append(Delivery(source_name, rel, digest, size, df.height))
    raw = pl.concat(frames, how="vertical")
    raw = raw.select(
        *LINEAGE, "person_id", "pnr_problem", pl.exclude(*LINEAGE, "person_id", "pnr_problem")
    )
    ledger_df = pl.DataFrame(
        [d.to_dict() for d in ledger],
        schema={
            "source": pl.String,
            "file": pl.String,
            "sha256": pl.String,
            "bytes": pl.Int64,
            "rows": pl.Int64,
        },
    ).with_columns(loaded_at=pl.lit(dt.datetime.now(dt.UTC).replace(tzinfo=None)))
    with warehouse.transaction(con):
        warehouse.replace_table(con, f"raw.{source_name}", raw)
        warehouse.replace_where(con, "raw.deliveries", ledger_df, "source = ?", [source_name])
    return ledger


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()
