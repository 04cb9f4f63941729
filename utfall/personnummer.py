"""Swedish personal identity numbers: check them, then replace them by a keyed hash.

Personnummer and samordningsnummer (day of birth + 60) are checked for form, date and
Luhn checksum, vectorised over a polars Series. They are then replaced by an HMAC-SHA256
pseudonym keyed from the environment, in memory, before anything is written: the warehouse
never sees a clear identity number. The same person gets the same pseudonym in every
delivery that uses the same key, so deliveries can still be joined.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sys
from pathlib import Path

import polars as pl

KEY_ENV = "UTFALL_PSEUDONYM_KEY"
#: Problems a number can have, in the order they are checked.
PROBLEMS = ("missing", "malformed", "invalid_date", "invalid_checksum")


def check(numbers: pl.Series, reference_year: int) -> pl.DataFrame:
    """Normalise and check identity numbers.

    Accepts `YYYYMMDD-NNNC`, `YYYYMMDDNNNC`, `YYMMDD-NNNC` and `YYMMDD+NNNC` (the `+` marks
    a person aged 100 or more; a 10-digit number's century is the one that puts the birth
    year in the 100 years up to `reference_year`). Returns columns `normalised` (12 digits,
    no separator; null when malformed) and `problem` (null when valid, else one of
    PROBLEMS).
    """
    s = numbers.cast(pl.String).str.strip_chars()
    df = pl.DataFrame({"raw": s})
    long_form = pl.col("raw").str.contains(r"^\d{8}-?\d{4}$")
    short_form = pl.col("raw").str.contains(r"^\d{6}[-+]?\d{4}$")
    digits = pl.col("raw").str.replace_all(r"[-+]", "")
    yy = digits.str.slice(0, 2).cast(pl.Int32, strict=False)
    century_year = (
        pl.lit(reference_year)
        - ((pl.lit(reference_year % 100) - yy) % 100)
        - pl.when(pl.col("raw").str.contains(r"\+")).then(100).otherwise(0)
    )
    twelve = (
        pl.when(long_form)
        .then(digits)
        .when(short_form)
        .then(century_year.cast(pl.String).str.zfill(4) + digits.str.slice(2))
        .otherwise(None)
    )
    df = df.with_columns(normalised=twelve)
    n = pl.col("normalised")
    day = n.str.slice(6, 2).cast(pl.Int32, strict=False)
    real_day = pl.when(day > 60).then(day - 60).otherwise(day)
    date_text = n.str.slice(0, 6) + real_day.cast(pl.String).str.zfill(2)
    date_ok = date_text.str.to_date("%Y%m%d", strict=False).is_not_null()
    ten = n.str.slice(2, 10)
    luhn_sum = pl.lit(0)
    for i in range(9):
        d = ten.str.slice(i, 1).cast(pl.Int32, strict=False)
        v = d * 2 if i % 2 == 0 else d
        luhn_sum = luhn_sum + (v // 10) + (v % 10)
    check_digit = (10 - luhn_sum % 10) % 10
    checksum_ok = check_digit == ten.str.slice(9, 1).cast(pl.Int32, strict=False)
    problem = (
        pl.when(pl.col("raw").is_null() | (pl.col("raw") == ""))
        .then(pl.lit("missing"))
        .when(n.is_null())
        .then(pl.lit("malformed"))
        .when(~date_ok)
        .then(pl.lit("invalid_date"))
        .when(~checksum_ok)
        .then(pl.lit("invalid_checksum"))
        .otherwise(None)
    )
    return df.select(pl.col("normalised"), problem.alias("problem"))


def pseudonymise(values: pl.Series, key: bytes) -> pl.Series:
    """HMAC-SHA256 of each value (32 hex chars); nulls stay null. Computed per distinct value."""
    uniques = values.drop_nulls().unique()
    mapping = {
        v: hmac.new(key, v.encode("utf-8"), hashlib.sha256).hexdigest()[:32]
        for v in uniques.to_list()
    }
    return values.replace_strict(mapping, default=None, return_dtype=pl.String)


def load_key(key_file: Path) -> bytes:
    """The pseudonymisation key: from $UTFALL_PSEUDONYM_KEY, else a local key file.

    A key file is created (random, mode 0600) beside the warehouse the first time, so a
    local warehouse keeps joining deliveries consistently; production sets the variable.
    """
    env = os.environ.get(KEY_ENV)
    if env:
        if len(env) < 16:
            raise ValueError(f"${KEY_ENV} is too short: use at least 16 characters")
        return env.encode("utf-8")
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        print(
            f"utfall: ${KEY_ENV} is not set; created a local pseudonymisation key at {key_file}",
            file=sys.stderr,
        )
    return key_file.read_text(encoding="utf-8").strip().encode("utf-8")


def luhn_digit(nine_digits: str) -> int:
    """The check digit for nine digits YYMMDDNNN (used by tests and examples)."""
    total = 0
    for i, ch in enumerate(nine_digits):
        v = int(ch) * (2 if i % 2 == 0 else 1)
        total += v // 10 + v % 10
    return (10 - total % 10) % 10
