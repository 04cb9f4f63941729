"""Identity numbers: checksum, forms, samordningsnummer, keyed pseudonyms."""

from __future__ import annotations

import polars as pl
import pytest

from utfall.personnummer import check, load_key, luhn_digit, pseudonymise


def test_luhn_digit_known_example():
    # Skatteverket's textbook example: 811218-9876.
    assert luhn_digit("811218987") == 6


@pytest.mark.parametrize(
    ("raw", "normalised", "problem"),
    [
        ("19811218-9876", "198112189876", None),
        ("198112189876", "198112189876", None),
        ("811218-9876", "198112189876", None),
        ("811218+9876", "188112189876", None),  # + marks age 100 or more
        ("19811218-9875", "198112189875", "invalid_checksum"),
        ("19811318-9876", "198113189876", "invalid_date"),
        ("20010229-1234", "200102291234", "invalid_date"),  # 2001 is no leap year
        ("abc", None, "malformed"),
        ("1981121-9876", None, "malformed"),
        (None, None, "missing"),
    ],
)
def test_check(raw, normalised, problem):
    out = check(pl.Series([raw], dtype=pl.String), reference_year=2025).row(0)
    assert out == (normalised, problem)


def test_samordningsnummer_day_plus_60():
    nine = "811278987"  # born on the 18th, day + 60
    number = f"19{nine[:6]}-{nine[6:]}{luhn_digit(nine)}"
    assert check(pl.Series([number]), 2025)["problem"][0] is None


def test_pseudonym_is_keyed_and_stable():
    values = pl.Series(["198112189876", None, "198112189876", "191212121212"])
    a = pseudonymise(values, b"k" * 32)
    assert a[0] == a[2] and a[1] is None and a[0] != a[3]
    assert len(a[0]) == 32 and "198112189876" not in a[0]
    assert pseudonymise(values, b"x" * 32)[0] != a[0]


def test_key_from_env_or_created_file(tmp_path, monkeypatch):
    monkeypatch.setenv("UTFALL_PSEUDONYM_KEY", "a-long-enough-key-123")
    assert load_key(tmp_path / "k") == b"a-long-enough-key-123"
    monkeypatch.setenv("UTFALL_PSEUDONYM_KEY", "short")
    with pytest.raises(ValueError, match="too short"):
        load_key(tmp_path / "k")
    monkeypatch.delenv("UTFALL_PSEUDONYM_KEY")
    key = load_key(tmp_path / "k")
    assert len(key) == 64 and load_key(tmp_path / "k") == key
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
