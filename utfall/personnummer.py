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

from utfall.errors import KeyProblem

KEY_ENV = "UTFALL_PSEUDONYM_KEY"
#: The shortest key accepted, in bytes: an HMAC-SHA256 key should carry 256 bits.
MIN_KEY_BYTES = 32
_KEY_HINT = "python -c 'import secrets; print(secrets.token_hex(32))'"
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
    Either source must give at least MIN_KEY_BYTES bytes (a key file may end in one line
    break, which is not part of the key). A variable that is set but empty is an error,
    not a reason to fall back to the file: that would silently change every pseudonym.
    Every problem is a `KeyProblem` whose message names the source, never the key.
    """
    env = os.environ.get(KEY_ENV)
    if env is not None:
        return _checked_key(env.encode("utf-8"), f"${KEY_ENV}")
    if not key_file.exists():
        _create_key_file(key_file)
    try:
        raw = key_file.read_bytes()
    except OSError as exc:
        raise KeyProblem(
            f"cannot read the pseudonymisation key file {key_file}: {exc.strerror}"
        ) from None
    key = raw.removesuffix(b"\n").removesuffix(b"\r") if raw.endswith(b"\n") else raw
    checked = _checked_key(key, f"key file {key_file}")
    if _is_text(key) and key != key.strip():
        # Earlier versions stripped all outer whitespace; keeping it would silently give
        # every person a new pseudonym, so make the owner decide.
        raise KeyProblem(
            f"key file {key_file} has whitespace before or after the key; remove it "
            "(earlier versions of utfall ignored it, so existing pseudonyms were made "
            "without it)"
        )
    return checked


def key_fingerprint(key: bytes) -> str:
    """A stable, non-reversible label of a key, to record which key made a run's pseudonyms.

    HMAC of a fixed message under the key: equal keys give equal fingerprints, and the
    64 bits shown say nothing useful about the key itself.
    """
    digest = hmac.new(key, b"utfall key fingerprint v1", hashlib.sha256).hexdigest()
    return "hmac-sha256:" + digest[:16]


def _checked_key(key: bytes, source: str) -> bytes:
    if not key.strip():
        what = "empty" if not key else f"only whitespace ({len(key)} bytes)"
        raise KeyProblem(
            f"{source} is {what}; the pseudonymisation key needs at least {MIN_KEY_BYTES} "
            f"bytes (e.g. {_KEY_HINT})"
        )
    if len(key) < MIN_KEY_BYTES:
        raise KeyProblem(
            f"{source} is {len(key)} bytes long; the pseudonymisation key needs at least "
            f"{MIN_KEY_BYTES} bytes (e.g. {_KEY_HINT})"
        )
    return key


def _create_key_file(key_file: Path) -> None:
    try:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it just now: use theirs
        return
    except OSError as exc:
        raise KeyProblem(
            f"${KEY_ENV} is not set and the local key file {key_file} cannot be created: "
            f"{exc.strerror}"
        ) from None
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))
    print(
        f"utfall: ${KEY_ENV} is not set; created a local pseudonymisation key at {key_file}",
        file=sys.stderr,
    )


def _is_text(key: bytes) -> bool:
    try:
        key.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def luhn_digit(nine_digits: str) -> int:
    """The check digit for nine digits YYMMDDNNN (used by tests and examples)."""
    total = 0
    for i, ch in enumerate(nine_digits):
        v = int(ch) * (2 if i % 2 == 0 else 1)
        total += v // 10 + v % 10
    return (10 - total % 10) % 10
