"""Expressions shared by the source models: parsing text as delivered, duplicate rows."""

from __future__ import annotations

import polars as pl

ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"


def as_date(col: str) -> pl.Expr:
    """Text `YYYY-MM-DD` as a date; null when absent or not a real date."""
    return pl.col(col).str.to_date("%Y-%m-%d", strict=False)


def is_date(col: str) -> pl.Expr:
    return pl.col(col).str.contains(ISO_DATE) & as_date(col).is_not_null()


def as_int(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.Int64, strict=False)


def is_int_between(col: str, low: int, high: int) -> pl.Expr:
    value = as_int(col)
    return pl.col(col).str.contains(r"^\d+$") & (value >= low) & (value <= high)


def is_repeat(columns: list[str]) -> pl.Expr:
    """True for every exact copy of an earlier row (the first occurrence stays)."""
    return ~pl.struct(columns).is_first_distinct()
