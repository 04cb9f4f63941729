"""What every person-level source shares: a pseudonymised person and its identity check."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl


class PersonRows(pa.DataFrameModel):
    """Rows keyed by `person_id` (the keyed hash); `pnr_problem` is null when the delivered
    personnummer was valid."""

    person_id: str = pa.Field(nullable=False)
    pnr_problem: str = pa.Field(nullable=True)

    class Config:
        strict = False

    # The method is named after the rule: with pandera 0.35, the second subclass of a model
    # reports an inherited check under its method name, ignoring `name=`.
    @pa.check("pnr_problem", name="invalid_personnummer")
    def invalid_personnummer(cls, data):
        return data.lazyframe.select(pl.col(data.key).is_null())
