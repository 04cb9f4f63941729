"""Person-level source kinds of the outcome contracts (participants, lab_results,
employment_status, public_costs): one module
per kind, registered in KINDS. Each says its delivered columns (the plan maps them) and its
row checks, which call the pure validate function of its utfall.domains module, so the
quarantine rules are that module's (the staged tables' DDL is utfall.warehouse.layout's).
Identities: `person_id` holds a pseudonym or an identity number; valid identity numbers
are replaced by the keyed hash on ingest (as for a person_table), and an identity-shaped
value that is not valid is quarantined (`invalid_personnummer`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl


@dataclass(frozen=True)
class PersonKind:
    name: str
    #: Canonical delivered columns -> required (the plan's `columns` map them).
    columns: dict[str, bool]
    #: (raw rows with _pos, all text; plan source) -> (valid typed rows with _pos, failures
    #: with _pos, rule, detail).
    validate: Callable[[pl.DataFrame, dict[str, Any]], tuple[pl.DataFrame, pl.DataFrame]]
    #: Whether the plan's `covariates` (staged in work.staging_values) apply.
    takes_covariates: bool = False


def _registry() -> dict[str, PersonKind]:
    from utfall.kinds import employment_status, lab_results, participants, public_costs

    members = (participants, lab_results, employment_status, public_costs)
    return {m.KIND.name: m.KIND for m in members}


KINDS: dict[str, PersonKind] = {}


def kinds() -> dict[str, PersonKind]:
    if not KINDS:
        KINDS.update(_registry())
    return KINDS


FAILURES_SCHEMA = {"_pos": pl.UInt32, "rule": pl.String, "detail": pl.String}


def parse_dates(raw: pl.DataFrame, columns: tuple[str, ...]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Text dates (YYYY-MM-DD) parsed. Rows with an identity number that is not valid
    (`pnr_problem`: rule invalid_personnummer) or an unreadable date (rule invalid_date, the
    column named) fail first: (parsed survivors with _pos, failures)."""
    pnr = pl.col("pnr_problem").is_not_null()
    fails = [
        raw.filter(pnr).select("_pos", rule=pl.lit("invalid_personnummer"), detail="pnr_problem")
    ]
    rest = raw.filter(~pnr)
    parsed = rest.with_columns(
        [pl.col(c).str.strptime(pl.Date, "%Y-%m-%d", strict=False).alias(c) for c in columns]
    )

    def unreadable(c: str) -> pl.Expr:
        parsed_c = pl.col(c).str.strptime(pl.Date, "%Y-%m-%d", strict=False)
        return pl.when(pl.col(c).is_not_null() & parsed_c.is_null()).then(pl.lit(c))

    which = rest.select(
        "_pos",
        pl.concat_str([unreadable(c) for c in columns], separator=", ", ignore_nulls=True)
        .fill_null("")
        .alias("detail"),
    )
    bad = which.filter(pl.col("detail") != "")
    fails.append(bad.select("_pos", rule=pl.lit("invalid_date"), detail="detail"))
    survivors = parsed.filter(~pl.col("_pos").is_in(bad["_pos"].implode()))
    return survivors, pl.concat([f.cast(FAILURES_SCHEMA) for f in fails])
