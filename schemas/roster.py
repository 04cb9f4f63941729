"""Employee roster: employment history, one row per employment period of a person.

A person may have several rows (a transfer to another unit, a change of extent, leaving and
being employed again), each with its unit, extent and period employed_from..employed_to
(inclusive; empty = still employed). The rows of one person must not overlap: on each day a
person is employed in at most one unit at one extent, or the person's days would be counted
twice.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from utfall.schemas.base import PersonRows
from utfall.schemas.checks import as_date, is_date, is_int_between, is_repeat

DATA_COLUMNS = [
    "person_id",
    "birth_year",
    "sex",
    "unit_id",
    "employment_extent",
    "employed_from",
    "employed_to",
]


class RosterRows(PersonRows):
    """Each roster row on its own, values as delivered (text)."""

    birth_year: str = pa.Field(nullable=False)
    sex: str = pa.Field(nullable=False)
    unit_id: str = pa.Field(nullable=False)
    employment_extent: str = pa.Field(nullable=False)
    employed_from: str = pa.Field(nullable=False)
    employed_to: str = pa.Field(nullable=True)

    class Config:
        strict = False

    @pa.check("birth_year", name="invalid_birth_year")
    def _birth_year(cls, data):
        return data.lazyframe.select(is_int_between(data.key, 1900, 2100))

    @pa.check("sex", name="invalid_sex")
    def _sex(cls, data):
        return data.lazyframe.select(pl.col(data.key).is_in(["K", "M"]))

    @pa.check("employment_extent", name="invalid_employment_extent")
    def _extent(cls, data):
        return data.lazyframe.select(is_int_between(data.key, 1, 100))

    @pa.check("employed_from", name="invalid_employed_from")
    def _from(cls, data):
        return data.lazyframe.select(is_date(data.key))

    @pa.check("employed_to", name="invalid_employed_to")
    def _to(cls, data):
        return data.lazyframe.select(pl.col(data.key).is_null() | is_date(data.key))

    @pa.dataframe_check(name="employed_to_before_employed_from")
    def _order(cls, data):
        return data.lazyframe.select(
            as_date("employed_to").is_null() | (as_date("employed_to") >= as_date("employed_from"))
        )


class RosterSet(pa.DataFrameModel):
    """Rules across the roster rows that passed RosterRows (typed, in delivery order)."""

    person_id: str = pa.Field(nullable=False)
    birth_year: int = pa.Field(nullable=False)
    sex: str = pa.Field(nullable=False)
    unit_id: str = pa.Field(nullable=False)
    employment_extent: int = pa.Field(nullable=False, ge=1, le=100)
    employed_from: pl.Date = pa.Field(nullable=False)
    employed_to: pl.Date = pa.Field(nullable=True)

    class Config:
        strict = False

    @pa.dataframe_check(name="duplicate_row")
    def _duplicate(cls, data):
        return data.lazyframe.select(~is_repeat(DATA_COLUMNS))

    @pa.dataframe_check(name="overlapping_employment")
    def _overlap(cls, data):
        """A row that starts on or before the latest end among the person's earlier rows
        (ordered by employed_from, employed_to with empty last, then delivery order)
        overlaps one of them: the first row is kept, every later overlapping row is
        quarantined (as overlapping_spell does; an earlier row counts even if it was itself
        quarantined, so which rows are kept never depends on how other rules fire). An exact
        copy of an earlier row is a duplicate_row, not this."""
        to = pl.col("employed_to").fill_null(pl.date(9999, 12, 31))
        order = [pl.col("employed_from"), to, pl.col("_file"), pl.col("_line")]
        prev_to = to.cum_max().shift(1).over("person_id", order_by=order)
        repeat = is_repeat(DATA_COLUMNS)
        return data.lazyframe.select(
            repeat | prev_to.is_null() | (pl.col("employed_from") > prev_to)
        )
