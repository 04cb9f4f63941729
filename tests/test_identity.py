"""Identity numbers outside the identity column, and masking values for messages."""

from __future__ import annotations

import time

import polars as pl
import pytest

from utfall.identity import identity_like_columns, mask
from utfall.personnummer import luhn_digit


def pnr(i: int, *, long: bool = True, sep: str = "-", day_offset: int = 0) -> str:
    nine = f"8{i % 10}{(i % 12) + 1:02d}{(i % 28) + 1 + day_offset:02d}{i % 1000:03d}"
    number = f"{nine[:6]}{sep}{nine[6:]}{luhn_digit(nine)}"
    return f"19{number}" if long else number


def broken_checksum(number: str) -> str:
    return number[:-1] + str((int(number[-1]) + 1) % 10)


def test_counts_valid_numbers_in_every_form():
    df = pl.DataFrame(
        {
            "personnummer": [pnr(i) for i in range(6)],
            "comment": [
                pnr(1),  # 12 digits with separator
                pnr(2, sep=""),  # 12 digits without
                pnr(3, long=False),  # 10 digits with -
                pnr(4, long=False, sep=""),  # 10 digits without
                f"  {pnr(5, day_offset=60)} ",  # samordningsnummer, padded
                "no number here",
            ],
            "contact": [pnr(7, long=False, sep="+"), None, "", "x", "y", "z"],  # + form
            "period": ["2024-01"] * 6,
        }
    )
    assert identity_like_columns(df, 2025) == {"personnummer": 6, "comment": 5, "contact": 1}
    assert identity_like_columns(df, 2025, skip=["personnummer"]) == {"comment": 5, "contact": 1}


def test_invalid_numbers_and_other_digits_do_not_count():
    df = pl.DataFrame(
        {
            "bad_checksum": [broken_checksum(pnr(i)) for i in range(4)],
            "bad_date": ["19811318-9876", "20010229-1234", "811232-1234", "19810000-0000"],
            "amounts": ["198112189876.5", "1981121898", "19811218987", "-811218-9876"],
            "dates": ["2024-01-31", "20240131", "31/01/2024", "2024"],
            "account": ["100000000001", "100000000002", "999999999999", "000000000000"],
        }
    )
    assert identity_like_columns(df, 2025) == {}


def test_only_string_columns_are_scanned():
    df = pl.DataFrame(
        {"as_text": [pnr(1, sep="")], "as_int": [int(pnr(1, sep=""))], "flag": [True]}
    )
    assert identity_like_columns(df, 2025) == {"as_text": 1}


def test_repeated_values_all_count():
    df = pl.DataFrame({"x": [pnr(1)] * 5 + [pnr(2)] * 3 + [None, "a"]})
    assert identity_like_columns(df, 2025) == {"x": 8}


def test_empty_frame_and_no_string_columns():
    assert identity_like_columns(pl.DataFrame({"x": []}, schema={"x": pl.String}), 2025) == {}
    assert identity_like_columns(pl.DataFrame({"n": [1, 2]}), 2025) == {}


def test_reference_year_sets_the_century_of_ten_digit_numbers():
    # 29 February 00: 2000 was a leap year, 1900 was not.
    nine = "000229123"
    df = pl.DataFrame({"x": [f"{nine[:6]}-{nine[6:]}{luhn_digit(nine)}"]})
    assert identity_like_columns(df, 2025) == {"x": 1}
    assert identity_like_columns(df, 1999) == {}


def test_a_million_rows_are_scanned_quickly():
    n = 1_000_000
    people = pl.Series([pnr(i) for i in range(1000)])
    i = pl.int_range(n, eager=True)
    df = pl.DataFrame(
        {
            "personnummer": people.gather(i % 1000),
            "period": "2024-" + (i % 12 + 1).cast(pl.String).str.zfill(2),
            "sick_days": (i % 9).cast(pl.String),
            "amount": (i * 0.5).cast(pl.String),
            "case_no": (i + 100000000000).cast(pl.String),  # 12 digits, not dates
            "note": pl.select(
                pl.when(i % 1000 == 0).then(people.gather(i % 997)).otherwise(pl.lit(""))
            ).to_series(),
        }
    )
    start = time.perf_counter()
    found = identity_like_columns(df, 2025, skip=["personnummer"])
    elapsed = time.perf_counter() - start
    assert found == {"note": 1000}
    assert elapsed < 3, f"scan took {elapsed:.2f} s"  # ~0.3 s here; generous for CI


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("19811218-9876", "<8 digits>-<4 digits>"),
        ("811218+9876", "<6 digits>+<4 digits>"),
        ("198112189876", "<12 digits>"),
        ("Åsa Öberg", "<3 letters> <5 letters>"),
        ("a1", "<1 letter><1 digit>"),
        ("x_y@z", "<1 letter>?<1 letter>?<1 letter>"),
        ("2024-01-31", "<4 digits>-<2 digits>-<2 digits>"),
        ("", "<empty>"),
        (None, "<null>"),
    ],
)
def test_mask_keeps_only_the_shape(value, masked):
    assert mask(value) == masked
