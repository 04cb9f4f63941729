"""Sick-leave spells: one row per spell (start, inclusive end, extent in percent)."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from utfall.schemas.base import PersonRows
from utfall.schemas.checks import as_date, is_date, is_repeat

DATA_COLUMNS = ["person_id", "spell_start", "spell_end", "extent"]
EXTENTS = ("25", "50", "75", "100")


class SickLeaveRows(PersonRows):
    """Each spell row on its own, values as delivered (text)."""

    spell_start: str = pa.Field(nullable=False)
    spell_end: str = pa.Field(nullable=False)
    extent: str = pa.Field(nullable=False)

    class Config:
        strict = False

    @pa.check("spell_start", name="invalid_spell_start")
    def _start(cls, data):
        return data.lazyframe.select(is_date(data.key))

    @pa.check("spell_end", name="invalid_spell_end")
    def _end(cls, data):
        return data.lazyframe.select(is_date(data.key))

    @pa.check("extent", name="unknown_extent")
    def _extent(cls, data):
        return data.lazyframe.select(pl.col(data.key).is_in(list(EXTENTS)))

    @pa.dataframe_check(name="end_before_start")
    def _order(cls, data):
        return data.lazyframe.select(as_date("spell_end") >= as_date("spell_start"))


class SickLeaveSet(pa.DataFrameModel):
    """Rules across the spells that passed SickLeaveRows (typed, in delivery order)."""

    person_id: str = pa.Field(nullable=False)
    spell_start: pl.Date = pa.Field(nullable=False)
    spell_end: pl.Date = pa.Field(nullable=False)
    extent: int = pa.Field(nullable=False, isin=[25, 50, 75, 100])

    class Config:
        strict = False

    @pa.dataframe_check(name="duplicate_row")
    def _duplicate(cls, data):
        return data.lazyframe.select(~is_repeat(DATA_COLUMNS))

    @pa.dataframe_check(name="overlapping_spell")
    def _overlap(cls, data):
        """A spell that starts on or before the latest end among the person's earlier spells
        (ordered by start, end, then delivery order) overlaps one of them."""
        order = ["spell_start", "spell_end", "_file", "_line"]
        prev_end = pl.col("spell_end").cum_max().shift(1).over("person_id", order_by=order)
        return data.lazyframe.select(prev_end.is_null() | (pl.col("spell_start") > prev_end))
