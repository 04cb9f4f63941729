"""Identity numbers: checksum, forms, samordningsnummer, keyed pseudonyms."""

from __future__ import annotations

import hashlib
import hmac

import polars as pl
import pytest

from utfall.errors import KeyProblem
from utfall.personnummer import (
    MIN_KEY_BYTES,
    check,
    key_fingerprint,
    load_key,
    luhn_digit,
    pseudonymise,
)


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
    monkeypatch.setenv("UTFALL_PSEUDONYM_KEY", "a-long-enough-key-0123456789abcdef")
    assert load_key(tmp_path / "k") == b"a-long-enough-key-0123456789abcdef"
    assert not (tmp_path / "k").exists()  # the variable wins; no file is made
    monkeypatch.delenv("UTFALL_PSEUDONYM_KEY")
    key = load_key(tmp_path / "k")
    assert len(key) == 64 and load_key(tmp_path / "k") == key
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600


SECRET = "s3cr3t-do-not-print-"  # 20 bytes: marks key material in the messages


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("", "is empty"),
        ("   \t ", "is only whitespace (5 bytes)"),
        (SECRET + "0123456789a", "is 31 bytes long"),
        (SECRET + "åäö", "is 26 bytes long"),  # bytes, not characters
    ],
)
def test_short_env_key_is_a_key_problem(tmp_path, monkeypatch, value, said):
    monkeypatch.setenv("UTFALL_PSEUDONYM_KEY", value)
    with pytest.raises(KeyProblem) as info:
        load_key(tmp_path / "k")
    message = str(info.value)
    assert message.startswith(f"$UTFALL_PSEUDONYM_KEY {said};")
    assert f"at least {MIN_KEY_BYTES} bytes" in message and "\n" not in message
    assert SECRET not in message and not (tmp_path / "k").exists()


def test_key_of_exactly_the_minimum_is_accepted(tmp_path, monkeypatch):
    monkeypatch.setenv("UTFALL_PSEUDONYM_KEY", "k" * MIN_KEY_BYTES)
    assert load_key(tmp_path / "k") == b"k" * MIN_KEY_BYTES


@pytest.mark.parametrize(
    ("content", "key"),
    [
        (b"x" * 32, b"x" * 32),
        (b"x" * 32 + b"\n", b"x" * 32),  # `echo key > file`
        (b"x" * 32 + b"\r\n", b"x" * 32),
        (bytes(range(200, 240)), bytes(range(200, 240))),  # a binary key is kept as is
    ],
)
def test_key_file_drops_one_trailing_line_break(tmp_path, monkeypatch, content, key):
    monkeypatch.delenv("UTFALL_PSEUDONYM_KEY")
    (tmp_path / "k").write_bytes(content)
    assert load_key(tmp_path / "k") == key


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"", "is empty"),
        (b"\n", "is empty"),
        (b"  \n\n", "is only whitespace (3 bytes)"),
        (SECRET.encode() + b"0123456789a\n", "is 31 bytes long"),
    ],
)
def test_short_key_file_is_a_key_problem(tmp_path, monkeypatch, content, said):
    monkeypatch.delenv("UTFALL_PSEUDONYM_KEY")
    path = tmp_path / "k"
    path.write_bytes(content)
    with pytest.raises(KeyProblem) as info:
        load_key(path)
    message = str(info.value)
    assert message.startswith(f"key file {path} {said};")
    assert f"at least {MIN_KEY_BYTES} bytes" in message and SECRET not in message


def test_key_file_with_whitespace_around_the_key_is_refused(tmp_path, monkeypatch):
    # Earlier versions stripped it: using it now would silently change every pseudonym.
    monkeypatch.delenv("UTFALL_PSEUDONYM_KEY")
    path = tmp_path / "k"
    path.write_bytes(b" " + SECRET.encode() * 2 + b"\n\n")
    with pytest.raises(KeyProblem, match="whitespace before or after the key") as info:
        load_key(path)
    assert SECRET not in str(info.value)


def test_unreadable_key_file_is_a_key_problem(tmp_path, monkeypatch):
    monkeypatch.delenv("UTFALL_PSEUDONYM_KEY")
    (tmp_path / "k").mkdir()  # a directory where the file should be: unreadable as a file
    with pytest.raises(KeyProblem, match=r"cannot read the pseudonymisation key file .*/k: "):
        load_key(tmp_path / "k")


def test_key_fingerprint_is_stable_and_reveals_nothing():
    key = b"test-key-not-secret-0123456789abcdef"
    fp = key_fingerprint(key)
    assert fp == key_fingerprint(key)
    assert fp.startswith("hmac-sha256:") and len(fp) == len("hmac-sha256:") + 16
    assert int(fp.removeprefix("hmac-sha256:"), 16) >= 0  # hex
    assert key_fingerprint(key + b"x") != fp and key_fingerprint(b"k" * 32) != fp
    assert hashlib.sha256(key).hexdigest()[:16] not in fp  # not a bare hash of the key
    # Pinned: a fingerprint recorded in a report must stay comparable across versions.
    assert fp == "hmac-sha256:f92f51cf470618e8"
    expected = hmac.new(key, b"utfall key fingerprint v1", hashlib.sha256).hexdigest()[:16]
    assert fp == "hmac-sha256:" + expected
