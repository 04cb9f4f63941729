"""Reading delivered CSV files: text columns, physical line numbers, clear errors.

Every error test uses real-looking, valid personnummer in the data and asserts that the
message names file, line and header, and never a delivered value.

Benchmark (a note, not a timed test): `.venv/bin/python tests/test_csvread.py [rows]`
prints read_csv_text against plain pl.read_csv on 1 000 000 rows x 5 columns for a file
without quotes (fast path), with quoted fields (quoted path) and with a line break inside
some quoted fields (csv-module path).
"""

from __future__ import annotations

import csv
import io
import random
import re
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal, assert_series_equal

from utfall import csvread
from utfall.csvread import DeliveryFileError, read_csv_text
from utfall.errors import UserError
from utfall.personnummer import check, luhn_digit

F = Path("deliveries/sick_days.csv")


def pnr(i: int, sep: str = "-") -> str:
    """A valid 12-digit personnummer, different for each i < 1000."""
    nine = f"7{i % 10}{(i % 12) + 1:02d}{(i % 28) + 1:02d}{i:03d}"
    return f"19{nine[:6]}{sep}{nine[6:]}{luhn_digit(nine)}"


PNRS = [pnr(i) for i in range(12)]


def test_pnr_helper_builds_valid_numbers():
    assert check(pl.Series(PNRS), 2025)["problem"].null_count() == len(PNRS)


def read(content: bytes | str, **kw) -> tuple[pl.DataFrame, pl.Series]:
    if isinstance(content, str):
        content = content.encode("utf-8")
    return read_csv_text(F, content, **kw)


def error(content: bytes | str, **kw) -> str:
    with pytest.raises(DeliveryFileError) as info:
        read(content, **kw)
    exc = info.value
    assert isinstance(exc, UserError)
    assert exc.file == str(F) and str(exc) == f"{F}: {exc.problem}"
    message = str(exc)
    for value in PNRS + [p.replace("-", "") for p in PNRS]:
        assert value not in message, "an error message echoes delivered content"
    assert "\n" not in message
    return exc.problem


def rows(n: int, start: int = 0) -> str:
    return "".join(f"{PNRS[i % 12]},2024-0{i % 9 + 1},{i % 5},{i}.5\n" for i in range(start, n))


HEADER = "personnummer,period,sick_days,amount\n"


@pytest.fixture
def no_slow_path(monkeypatch):
    """Fail if the csv-module path is used: clean files must stay on a polars path."""

    def refuse(*args, **kwargs):
        raise AssertionError("fell back to the csv-module path")

    monkeypatch.setattr(csvread, "_slow", refuse)


# --- results --------------------------------------------------------------------------


def test_clean_file_all_text_with_line_numbers(no_slow_path):
    df, line = read(HEADER + rows(5))
    assert df.columns == ["personnummer", "period", "sick_days", "amount"]
    assert all(dtype == pl.String for dtype in df.dtypes)
    assert df["personnummer"].to_list() == PNRS[:5] and df["amount"][0] == "0.5"
    assert line.name == "_line" and line.dtype == pl.Int64
    assert line.to_list() == [2, 3, 4, 5, 6]


def test_values_are_kept_as_delivered(no_slow_path):
    df, _ = read("a,b,c\n  x ,,007\n")
    assert df.row(0) == ("  x ", "", "007")  # no stripping, "" stays "", no number parsing


def test_quoted_field_with_line_breaks_moves_later_lines_down():
    text = (
        HEADER
        + f'{PNRS[0]},2024-01,1,"1\n2\n3"\n'  # lines 2-4
        + f"{PNRS[1]},2024-01,2,5\n"  # line 5
        + f'{PNRS[2]},"2024-\r\n01",3,6\n'  # lines 6-7
        + f"{PNRS[3]},2024-01,4,7\n"  # line 8
    )
    df, line = read(text)
    assert line.to_list() == [2, 5, 6, 8]
    assert df["amount"][0] == "1\n2\n3" and df["period"][2] == "2024-\r\n01"


def test_crlf_file_with_multiline_field():
    text = 'a,b\r\n1,"x\r\ny"\r\n2,z\r\n'
    df, line = read(text)
    assert df.rows() == [("1", "x\r\ny"), ("2", "z")] and line.to_list() == [2, 4]


@pytest.mark.parametrize("quoted", [False, True])
@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_blank_lines_are_skipped_but_counted(no_slow_path, quoted, eol):
    q = '"' if quoted else ""
    text = f"a,b{eol}{q}1{q},2{eol}{eol}3,4{eol}{eol}{eol}5,6{eol}{eol}"
    df, line = read(text)
    assert df.rows() == [("1", "2"), ("3", "4"), ("5", "6")]
    assert line.to_list() == [2, 4, 7]


def test_blank_lines_in_the_csv_module_path():
    df, line = read('a,b\n1,"x\ny"\n\n3,4\n')
    assert df.rows() == [("1", "x\ny"), ("3", "4")] and line.to_list() == [2, 5]


def test_single_column_file_with_blank_lines(no_slow_path):
    df, line = read(f"personnummer\n{PNRS[0]}\n\n{PNRS[1]}\n")
    assert df["personnummer"].to_list() == PNRS[:2] and line.to_list() == [2, 4]


def test_last_line_without_line_break(no_slow_path):
    df, line = read("a,b\n1,2\n3,4")
    assert df.rows() == [("1", "2"), ("3", "4")] and line.to_list() == [2, 3]


def test_lone_carriage_returns_end_lines():
    df, line = read("a,b\r1,2\r3,4\r")
    assert df.rows() == [("1", "2"), ("3", "4")] and line.to_list() == [2, 3]


@pytest.mark.parametrize("quoted", [False, True])
def test_utf8_bom_is_dropped(quoted):
    name = '"personnummer"' if quoted else "personnummer"
    df, line = read(b"\xef\xbb\xbf" + f"{name},period\n{PNRS[0]},2024-01\n".encode())
    assert df.columns == ["personnummer", "period"] and line.to_list() == [2]


def test_semicolon_delimiter_with_decimal_commas(no_slow_path):
    df, _ = read(f'personnummer;amount\n{PNRS[0]};12,5\n{PNRS[1]};"1 000,25"\n', delimiter=";")
    assert df.rows() == [(PNRS[0], "12,5"), (PNRS[1], "1 000,25")]


def test_tab_delimiter(no_slow_path):
    df, _ = read("a\tb\n1\t2\n", delimiter="\t")
    assert df.rows() == [("1", "2")]


@pytest.mark.parametrize("quoted", [False, True])
def test_latin1_file(quoted):
    q = '"' if quoted else ""
    content = f"namn;ort\n{q}Åsa Öberg{q};Gävle\n".encode("latin-1")
    df, _ = read(content, delimiter=";", encoding="latin-1")
    assert df.rows() == [("Åsa Öberg", "Gävle")]
    problem = error(content, delimiter=";")
    assert problem == (
        f"line 2: not valid utf-8 text (byte offset {9 + len(q)}); set sources[].csv.encoding "
        "in the plan to the file's encoding (e.g. latin-1 or cp1252)"
    )


def test_quotes_and_doubled_quotes_are_unescaped(no_slow_path):
    df, line = read('a,b\n"x ""y"", z","1"\n"",2\n')
    assert df.rows() == [('x "y", z', "1"), ("", "2")] and line.to_list() == [2, 3]


# --- the paths agree ------------------------------------------------------------------


_CSV_MODULE_PATH = csvread._slow  # kept before `no_slow_path` replaces it


def _reference(content: bytes, delimiter: str = ",") -> tuple[pl.DataFrame, pl.Series]:
    """The csv-module path on the whole file: the authority the other paths must match."""
    src = csvread._Source(F, content, "utf-8", 3 if content.startswith(b"\xef\xbb\xbf") else 0)
    return _CSV_MODULE_PATH(src, content[src.bom :].decode("utf-8"), delimiter, ())


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_fast_and_slow_paths_give_identical_frames(no_slow_path, eol):
    content = (HEADER + rows(500)).replace("\n", eol).encode()
    fast = read(content)
    slow = _reference(content)
    assert_frame_equal(fast[0], slow[0])
    assert_series_equal(fast[1], slow[1])


def test_quoted_and_slow_paths_give_identical_frames(no_slow_path):
    content = '"p","d","n"\n' + "".join(f'"{p}","{i}, ""x""",{i}\n' for i, p in enumerate(PNRS))
    quoted = read(content)
    slow = _reference(content.encode())
    assert_frame_equal(quoted[0], slow[0])
    assert_series_equal(quoted[1], slow[1])


def _random_csv(rng: random.Random, delimiter: str) -> bytes:
    width = rng.randint(1, 4)
    alphabet = ["a", "Å", " ", "1", "-", delimiter, '"', "\n", "\r\n", "x"]
    out = io.StringIO()
    eol = rng.choice(["\n", "\r\n"])
    quoting = rng.choice([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])
    writer = csv.writer(out, delimiter=delimiter, lineterminator=eol, quoting=quoting)
    other_eol = "\n" if eol == "\r\n" else "\r\n"
    mixed = csv.writer(out, delimiter=delimiter, lineterminator=other_eol, quoting=quoting)
    mixing = rng.random() < 0.2  # some files mix line ends
    writer.writerow([f"col{i}" for i in range(width)])
    plain = rng.random() < 0.5  # half the files avoid quotes, line breaks in fields
    for _ in range(rng.randint(1, 30)):
        if rng.random() < 0.1:
            out.write(eol)  # a blank line
            continue
        pool = alphabet[:5] + ["x"] if plain else alphabet
        n = width
        if rng.random() < 0.03:  # now and then a ragged row
            n = max(1, width + rng.choice([-1, 1, 2]))
        row = ["".join(rng.choice(pool) for _ in range(rng.randint(0, 4))) for _ in range(n)]
        if width == 1 and row == [""]:
            row = ["x"]  # a lone empty field is written as a blank line
        (mixed if mixing and rng.random() < 0.3 else writer).writerow(row)
    content = out.getvalue()
    if rng.random() < 0.3:
        content = content.removesuffix(eol)
    if rng.random() < 0.05:
        content += '"unclosed'
    return content.encode("utf-8")


def test_all_paths_agree_with_the_csv_module_on_random_files():
    rng = random.Random(20240131)
    for _ in range(600):
        delimiter = rng.choice([",", ";", "\t"])
        content = _random_csv(rng, delimiter)
        try:
            want = _reference(content, delimiter)
        except DeliveryFileError as exc:  # the same error, naming the same line
            with pytest.raises(DeliveryFileError, match=re.escape(exc.problem)):
                read(content, delimiter=delimiter)
            continue
        got = read(content, delimiter=delimiter)
        assert_frame_equal(got[0], want[0])
        assert_series_equal(got[1], want[1])


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf", b"\n", b"\r\n\n"])
def test_empty_file(content):
    assert error(content) == "the file is empty (no header row)"


@pytest.mark.parametrize("quoted", [False, True])
def test_header_not_on_line_1(quoted):
    q = '"' if quoted else ""
    assert error(f"\n{q}a{q},b\n1,2\n") == "line 1 is empty; the header row must be on line 1"


@pytest.mark.parametrize("content", [HEADER, HEADER.strip(), HEADER + "\n\n", '"a","b"\n\n'])
def test_header_without_data_rows(content):
    assert error(content) == "the file has a header but no data rows"


@pytest.mark.parametrize("quoted", [False, True])
def test_duplicate_header_names_are_named(quoted):
    q = '"' if quoted else ""
    text = f"{q}personnummer{q},period,period,amount,amount\n{PNRS[0]},1,2,3,4\n"
    assert error(text) == (
        "the header row names a column more than once: 'period' (columns 2, 3); "
        "'amount' (columns 4, 5)"
    )


def test_empty_header_names():
    text = f"personnummer,, ,amount\n{PNRS[0]},1,2,3\n"
    assert error(text) == "the header row has no name for column(s) 2, 3 (counted from 1)"


@pytest.mark.parametrize(
    "first",
    [
        f"{PNRS[0]},2024-01,3,1.5",  # a data row where the header should be
        f"{PNRS[0].replace('-', '')[2:]},a,b,c",  # a 10-digit personnummer
        "personnummer,2024-01-31,c,d",  # a date
        "personnummer,period,3,d",  # a number
        f'"{PNRS[0]}",b,c,d',
    ],
)
def test_header_that_looks_like_data(first):
    text = f"{first}\n{PNRS[1]},2024-01,3,1.5\n"
    problem = error(text, expected_columns=["personnummer", "period", "sick_days"])
    assert problem == (
        "line 1 does not look like a header row (it holds data values); "
        "expected column names such as personnummer, period, sick_days"
    )
    assert "2024-01" not in problem and "1.5" not in problem
    assert error(text).endswith("expected the column names that sources[].columns maps")


def test_header_that_looks_like_data_wins_over_duplicate_names():
    # A data row often repeats a value; naming "duplicates" would echo it.
    assert "does not look like a header" in error(f"{PNRS[0]},{PNRS[0]}\n{PNRS[1]},x\n")


@pytest.mark.parametrize(
    ("body", "line", "fields"),
    [
        (rows(3) + f"{PNRS[5]},2024-01,1\n" + rows(6, 4), 5, 3),  # too few
        (rows(3) + f"{PNRS[5]},2024-01,1,2,{PNRS[6]}\n" + rows(6, 4), 5, 5),  # too many
        (rows(3) + f"{PNRS[5]},2024-01,1,2,\n", 5, 5),  # a trailing delimiter
        (rows(2) + "\n\n" + f"{PNRS[5]}\n" + rows(5, 3), 6, 1),  # after blank lines
        (rows(2) + "   \n" + rows(4, 3), 4, 1),  # spaces only: a record, not blank
        (rows(3) + f"{PNRS[5]},2024-01,1\n", 5, 3),  # the last line
        (rows(3) + f"{PNRS[5]},2024-01,1", 5, 3),  # the last line, no line break
    ],
)
@pytest.mark.parametrize("style", ["plain", "crlf", "quoted", "multiline"])
def test_ragged_row_names_its_physical_line(body, line, fields, style):
    text = HEADER + body
    if style == "crlf":
        text = text.replace("\n", "\r\n")
    if style == "quoted":
        text = text.replace("personnummer,", '"personnummer",')
    if style == "multiline":  # a field with a line break before: one line further down
        text = text.replace("personnummer,", '"person\nnummer",')
        line += 1
    assert (
        error(text) == f"line {line}: {fields} field{'s' if fields > 1 else ''}, the header has 4"
    )


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a,b\n1\r\n2,3\n", 2),  # a short CRLF line in an LF file: as long as a full LF line
        ("a,b\r\n1,2\n3\r\n4,5\r\n", 3),
        ("a,b\n1,2\r\n3\n", 3),
    ],
)
def test_ragged_row_with_mixed_line_ends(text, line):
    assert error(text) == f"line {line}: 1 field, the header has 2"


def test_mixed_line_ends_are_read(no_slow_path):
    df, line = read("a,b\n1,2\r\n\r\n3,4\n")
    assert df.rows() == [("1", "2"), ("3", "4")] and line.to_list() == [2, 4]


def test_ragged_row_in_a_single_column_file():
    assert error(f"personnummer\n{PNRS[0]}\n{PNRS[1]},x\n") == "line 3: 2 fields, the header has 1"


def test_ragged_row_message_does_not_echo_polars():
    problem = error(HEADER + f"{PNRS[0]},a,b,c,d,e,f\n")
    assert "truncate_ragged_lines" not in problem and "Schema" not in problem


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (HEADER + rows(3) + f'{PNRS[3]},2024-01,1,"2\n{PNRS[4]},2024-01,1,2\n', 5),
        (HEADER + rows(3) + f'"{PNRS[3]}\n\n', 5),
        (HEADER + f'{PNRS[0]},"x\ny",1,2\n' + f'{PNRS[3]},2024-01,"1', 4),  # truncated
    ],
)
def test_unterminated_quote_names_the_line_where_its_record_starts(text, line):
    assert error(text) == (
        f"line {line}: a quoted field in the record starting here is never closed "
        "(is the file truncated?)"
    )


def test_text_after_a_closing_quote():
    problem = error(HEADER + rows(2) + f'"{PNRS[3]}"x,2024-01,1,2\n')
    assert problem.startswith("line 4: a closing quote is followed by other characters")


def test_very_long_unclosed_quote_is_reported_without_content():
    text = HEADER + f'{PNRS[0]},"2024-01,1,2\n' + rows(20_000)
    problem = error(text)
    assert problem.startswith("line 2: a field in the record starting here is longer than")


@pytest.mark.parametrize("quoted", [False, True])
def test_undecodable_bytes_deep_in_the_file(quoted):
    q = '"' if quoted else ""
    head = (HEADER + rows(1000)).encode()
    content = head + f"{q}{PNRS[0]}{q},2024-01,1,".encode() + b"\xff\n" + rows(10).encode()
    offset = len(head) + len(PNRS[0]) + 2 * len(q) + len(",2024-01,1,")
    assert error(content) == (
        f"line 1002: not valid utf-8 text (byte offset {offset}); set sources[].csv.encoding "
        "in the plan to the file's encoding (e.g. latin-1 or cp1252)"
    )


def test_undecodable_header_counts_the_bom_in_the_offset():
    problem = error(b"\xef\xbb\xbfperson\xffnummer\n1\n")
    assert problem.startswith("line 1: not valid utf-8 text (byte offset 9);")


def test_unknown_encoding_and_bad_delimiter():
    assert error("a\n1\n", encoding="ebcdic-sv") == (
        "unknown text encoding 'ebcdic-sv' in sources[].csv.encoding"
    )
    assert "sources[].csv.delimiter is ';;'" in error("a\n1\n", delimiter=";;")
    assert "delimiter" in error("a\n1\n", delimiter='"')


# --- benchmark (run by hand) ----------------------------------------------------------


def _benchmark(n: int = 1_000_000, repeats: int = 7) -> None:
    import time

    rng = random.Random(1)
    people = []
    for _ in range(50_000):
        nine = f"{rng.randint(40, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        nine += f"{rng.randint(0, 999):03d}"
        people.append(f"19{nine[:6]}-{nine[6:]}{luhn_digit(nine)}")
    lines = [
        f"{people[i % 50_000]},2024-{i % 12 + 1:02d},{i % 7},{i * 0.5},Åsa Öberg {i % 100}"
        for i in range(n)
    ]
    head = "personnummer,period,sick_days,amount,name\n"
    files = {
        "no quotes (fast path)": head + "\n".join(lines) + "\n",
        "quoted names (quoted path)": head
        + "\n".join(x.replace("Åsa", '"Åsa') + '"' for x in lines)
        + "\n",
        "0.1% with a line break (csv module)": head
        + "\n".join(
            x.replace("Åsa", '"Åsa\n') + '"' if i % 1000 == 0 else x for i, x in enumerate(lines)
        )
        + "\n",
    }
    del lines

    def clock(f) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        f()
        return time.perf_counter() - t0, time.process_time() - c0

    print(f"{n:,} rows x 5 columns; best of {repeats} (interleaved); wall / CPU seconds")
    for name, text in files.items():
        content = text.encode("utf-8")
        k = repeats if "csv module" not in name else 2
        plain, ours = [], []
        for _ in range(k):
            plain.append(clock(lambda c=content: pl.read_csv(c, infer_schema=False)))
            ours.append(clock(lambda c=content: read_csv_text(F, c)))
        (pw, pc), (ow, oc) = min(plain), min(ours)
        print(
            f"  {name:36s} {len(content) / 1e6:4.0f} MB  pl.read_csv {pw:.3f} / {pc:.3f}"
            f"  read_csv_text {ow:.3f} / {oc:.3f}  ratio {ow / pw:.2f}"
        )


if __name__ == "__main__":
    import sys

    _benchmark(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
