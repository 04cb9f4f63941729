"""Validate a source's raw rows with its Pandera models; quarantine the rows that fail.

Every delivered row ends in exactly one place: the run's staging rows (typed, valid) or
its quarantine rows (with the rule it broke, the file and line, and the row as delivered,
pseudonymised). The counts are reconciled before anything is written, and a source whose
quarantined share exceeds the plan's limit is rejected loudly: the run is not published,
and its quarantine stays inspectable in `quarantine.by_run`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb
import polars as pl

from utfall import warehouse
from utfall.errors import UserError
from utfall.plan import GENERIC_KINDS, Plan
from utfall.warehouse.runs import Run

QUARANTINE_SCHEMA_NO_SOURCE = {
    "file": pl.String,
    "line": pl.Int64,
    "rule": pl.String,
    "rules": pl.String,
    "detail": pl.String,
    "record": pl.String,
}
DEFAULT_MAX_QUARANTINE_SHARE = 0.05
#: Rule for a spell whose person is not among the roster's valid employees.
UNKNOWN_PERSON = "unknown_person"
#: Rule for a date before 1900 or more than a year after the plan's measurement end: such a
#: value is a typo or a placeholder, and kept it would distort (or, through overlaps,
#: quarantine) the person's real rows.
DATE_OUT_OF_RANGE = "date_out_of_range"
EARLIEST_DATE = dt.date(1900, 1, 1)
#: Date columns checked against the range, per kind: (column, upper bound applies).
RANGE_CHECKED = {
    "employee_roster": (("employed_from", True), ("employed_to", False)),
    "sick_leave_spells": (("spell_start", True), ("spell_end", True)),
}


def latest_date(plan: Plan) -> dt.date:
    """The latest plausible date in a delivery: one year after the measurement end."""
    end = plan.period("measurement")[1]
    return end.replace(year=end.year + 1) if not (end.month == 2 and end.day == 29) else end


class DeliveryRejected(UserError):
    """A delivery whose quarantined share is above the plan's limit."""


@dataclass(frozen=True)
class ValidationSummary:
    source: str
    delivered: int
    loaded: int
    quarantined: int
    by_rule: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def typed(kind: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Rows that passed the row model, with their columns cast to real types."""
    from utfall.schemas.checks import as_date, as_int

    if kind == "employee_roster":
        casts = [
            as_int("birth_year"),
            as_int("employment_extent"),
            as_date("employed_from"),
            as_date("employed_to")
            if "employed_to" in frame.columns
            else pl.lit(None, dtype=pl.Date).alias("employed_to"),
        ]
    elif kind == "sick_leave_spells":
        casts = [as_date("spell_start"), as_date("spell_end"), as_int("extent")]
    else:  # pragma: no cover - the plan schema admits no other kind
        raise ValueError(f"no typing for source kind {kind!r}")
    return frame.with_columns(casts).drop("pnr_problem")


def failures(schema: Any, frame: pl.DataFrame) -> pl.DataFrame:
    """Row failures of a Pandera model or schema: columns `index`, `rule`, `detail`."""
    import pandera.errors

    empty = pl.DataFrame(schema={"index": pl.Int64, "rule": pl.String, "detail": pl.String})
    if frame.height == 0:
        return empty
    try:
        schema.validate(frame, lazy=True)
        return empty
    except pandera.errors.SchemaErrors as exc:
        fc = exc.failure_cases
    if fc["index"].null_count():
        raise RuntimeError(f"schema-level failure (a bug, not a bad row):\n{fc}")
    rule = (
        pl.when(pl.col("check") == "not_nullable")
        .then(pl.lit("missing_") + pl.col("column"))
        .otherwise(pl.col("check"))
    )
    detail = (
        pl.when(pl.col("schema_context") == "Column")
        .then(pl.col("column") + pl.lit("=") + pl.col("failure_case").fill_null("<empty>"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    return fc.select(pl.col("index").cast(pl.Int64), rule.alias("rule"), detail.alias("detail"))


def date_range_check(kind: str, latest: dt.date) -> Any:
    """A Pandera check: the kind's date columns within EARLIEST_DATE .. `latest`."""
    import pandera.polars as pa

    def dates_within(d):  # pandera dispatches by name: avoid its built-ins (in_range)
        ok = pl.lit(True)
        for col, upper in RANGE_CHECKED.get(kind, ()):
            c = pl.col(col)
            inside = c >= pl.lit(EARLIEST_DATE)
            if upper:
                inside = inside & (c <= pl.lit(latest))
            ok = ok & (c.is_null() | inside)
        return d.lazyframe.select(ok)

    return pa.DataFrameSchema(checks=[pa.Check(dates_within, name=DATE_OUT_OF_RANGE)])


def validate_frame(
    kind: str,
    raw: pl.DataFrame,
    known_persons: pl.Series | None = None,
    latest: dt.date | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split raw rows into (valid typed rows, quarantined rows with rules); pure function.

    `raw` must be in delivery order (by file, then line). For spells, `known_persons`
    are the valid roster's person ids; a spell of anyone else is quarantined. With
    `latest`, dates outside 1900-01-01 .. `latest` are quarantined before the rules across
    rows run, so a placeholder spell cannot make a person's real spells "overlapping".
    """
    import pandera.polars as pa

    from utfall.schemas import MODELS

    row_model, set_model = MODELS[kind]
    raw = raw.with_row_index("_pos")
    failed = failures(row_model, raw).with_columns(pl.col("index").cast(pl.UInt32).alias("_pos"))
    survivors = raw.filter(~pl.col("_pos").is_in(failed["_pos"].implode()))
    typed_rows = typed(kind, survivors)
    if latest is not None:
        range_failed = failures(date_range_check(kind, latest), typed_rows).join(
            typed_rows.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("index"), "_pos"),
            on="index",
        )
        failed = pl.concat(
            [failed.select("_pos", "rule", "detail"), range_failed.select("_pos", "rule", "detail")]
        )
        typed_rows = typed_rows.filter(~pl.col("_pos").is_in(range_failed["_pos"].implode()))
    set_failed = failures(set_model, typed_rows)
    if known_persons is not None:
        person_check = pa.DataFrameSchema(
            checks=[
                pa.Check(
                    lambda d: d.lazyframe.select(
                        pl.col("person_id").is_in(known_persons.implode())
                    ),
                    name=UNKNOWN_PERSON,
                )
            ]
        )
        set_failed = pl.concat([set_failed, failures(person_check, typed_rows)])
    set_failed = set_failed.join(
        typed_rows.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("index"), "_pos"),
        on="index",
    )
    all_failed = pl.concat(
        [failed.select("_pos", "rule", "detail"), set_failed.select("_pos", "rule", "detail")]
    )
    quarantined, bad = _quarantined(raw, all_failed)
    valid = typed_rows.filter(~pl.col("_pos").is_in(bad["_pos"].implode())).drop("_pos")
    return valid, quarantined


def _quarantined(raw: pl.DataFrame, failed: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows of `raw` (with `_pos`) that broke a rule in `failed` (`_pos`, rule, detail): the
    first rule, all rules, the first detail, the row as delivered (pseudonymised) as JSON."""
    bad = failed.group_by("_pos", maintain_order=True).agg(
        pl.col("rule").first(),
        pl.col("rule").unique().sort().str.join(",").alias("rules"),
        pl.col("detail").drop_nulls().first(),
    )
    record_cols = [
        c for c in raw.columns if c not in ("_pos", "_file", "_line", "contract_id", "run_id")
    ]
    quarantined = (
        raw.join(bad, on="_pos")
        .sort("_pos")
        .select(
            pl.col("_file").alias("file"),
            pl.col("_line").alias("line"),
            "rule",
            "rules",
            "detail",
            pl.struct(record_cols).struct.json_encode().alias("record"),
        )
    )
    return quarantined, bad


def _positioned(failed: pl.DataFrame, frame: pl.DataFrame) -> pl.DataFrame:
    """Failures indexed by row of `frame` -> by `_pos` (the row's place in the raw frame)."""
    return failed.join(
        frame.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("index"), "_pos"), on="index"
    ).select("_pos", "rule", "detail")


def validate_generic_frame(
    plan: Plan, source_name: str, raw: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split a generic source's raw rows (delivery order, variables decoded) into (valid
    typed rows, quarantined rows with rules); pure. See schemas.generic for the rules."""
    from utfall.schemas import generic

    source = plan.source(source_name)
    groups = plan.treatment_groups(source_name)
    periods = (plan.period("baseline"), plan.period("measurement"))
    raw = raw.with_row_index("_pos")
    failed = failures(generic.rows_schema(source, groups, periods), raw).with_columns(
        pl.col("index").cast(pl.UInt32).alias("_pos")
    )
    survivors = raw.filter(~pl.col("_pos").is_in(failed["_pos"].implode()))
    typed_rows = generic.typed(source, groups, survivors, periods)
    set_failed = _positioned(failures(generic.set_schema(source), typed_rows), typed_rows)
    all_failed = pl.concat([failed.select("_pos", "rule", "detail"), set_failed])
    quarantined, bad = _quarantined(raw, all_failed)
    valid = typed_rows.filter(~pl.col("_pos").is_in(bad["_pos"].implode())).drop("_pos")
    return valid, quarantined


def read_person_raw(
    con: duckdb.DuckDBPyConnection, plan: Plan, run: Run, source_name: str
) -> pl.DataFrame:
    """A person-level kind's raw rows (delivery order), covariates decoded from values_json."""
    from utfall.warehouse.layout import PERSON_KINDS_WITH_VALUES

    source = plan.source(source_name)
    if source["kind"] in PERSON_KINDS_WITH_VALUES:
        return read_generic_raw(con, plan, run, source_name)
    return warehouse.read_table(
        con,
        f"SELECT * EXCLUDE (contract_id, run_id, source) FROM work.raw_{source['kind']} "
        "WHERE contract_id = $contract_id AND run_id = $run_id AND source = $source "
        "ORDER BY _file, _line",
        {**run.scope, "source": source_name},
    )


def validate_person_frame(
    source: dict[str, Any], raw: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split a person-level kind's raw rows into (valid typed rows, quarantined rows with
    their rule), by the kind's row checks (utfall.kinds, which call utfall.domains); pure."""
    from utfall.kinds import kinds

    raw = raw.with_row_index("_pos")
    valid, failed = kinds()[source["kind"]].validate(raw, source)
    quarantined, bad = _quarantined(raw, failed)
    valid = valid.filter(~pl.col("_pos").is_in(bad["_pos"].implode())).sort("_pos").drop("_pos")
    return valid, quarantined


def read_generic_raw(
    con: duckdb.DuckDBPyConnection, plan: Plan, run: Run, source_name: str
) -> pl.DataFrame:
    """A generic source's raw rows with the plan-named columns decoded from values_json."""
    from utfall.schemas.generic import variable_columns

    source = plan.source(source_name)
    raw = warehouse.read_table(
        con,
        f"SELECT * EXCLUDE (contract_id, run_id, source) FROM work.raw_{source['kind']} "
        "WHERE contract_id = $contract_id AND run_id = $run_id AND source = $source "
        "ORDER BY _file, _line",
        {**run.scope, "source": source_name},
    )
    names = list(variable_columns(source))
    struct = pl.Struct({n: pl.String for n in names})
    return (
        raw.with_columns(pl.col("values_json").str.json_decode(struct).alias("_v"))
        .drop("values_json")
        .unnest("_v")
    )


def long_values(source: dict[str, Any], valid: pl.DataFrame) -> pl.DataFrame:
    """A generic source's plan-named columns in the long layout of work.staging_values."""
    from utfall.schemas.generic import variable_columns

    parts = [
        valid.select(
            "_file",
            "_line",
            pl.lit(name).alias("variable"),
            pl.lit("outcome" if role == "outcome" else "covariate").alias("role"),
            (pl.col(name) if role != "categorical" else pl.lit(None))
            .cast(pl.Float64)
            .alias("value_num"),
            (pl.col(name) if role == "categorical" else pl.lit(None))
            .cast(pl.String)
            .alias("value_text"),
        )
        for name, role in variable_columns(source).items()
    ]
    return pl.concat(parts)


def staged_generic(
    con: duckdb.DuckDBPyConnection, plan: Plan, run: Run, source_name: str
) -> pl.DataFrame:
    """A generic source's staged rows of a run, one row per delivered row, with its
    plan-named columns back as columns (numbers Float64, categories String)."""
    from utfall.schemas.generic import variable_columns

    source = plan.source(source_name)
    scope = {**run.scope, "source": source_name}
    where = "WHERE contract_id = $contract_id AND run_id = $run_id AND source = $source"
    fixed = warehouse.read_table(
        con,
        f"SELECT * EXCLUDE (contract_id, run_id, source) FROM work.staging_{source['kind']} "
        f"{where} ORDER BY _file, _line",
        scope,
    )
    values = warehouse.read_table(
        con,
        f"SELECT _file, _line, variable, value_num, value_text FROM work.staging_values {where}",
        scope,
    )
    for name, role in variable_columns(source).items():
        column = "value_text" if role == "categorical" else "value_num"
        part = values.filter(pl.col("variable") == name).select(
            "_file", "_line", pl.col(column).alias(name)
        )
        fixed = fixed.join(part, on=["_file", "_line"], how="left", maintain_order="left")
    return fixed


def validate_source(
    con: duckdb.DuckDBPyConnection, plan: Plan, run: Run, source_name: str
) -> ValidationSummary:
    """Validate the run's raw rows of a source into staging and quarantine, reconciled."""
    source = plan.source(source_name)
    kind = source["kind"]
    scope = {**run.scope, "source": source_name}
    if kind in GENERIC_KINDS:
        raw = read_generic_raw(con, plan, run, source_name)
        valid, quarantined = validate_generic_frame(plan, source_name, raw)
        return _store(con, plan, run, source, raw.height, valid, quarantined)
    from utfall.kinds import kinds

    if kind in kinds():
        raw = read_person_raw(con, plan, run, source_name)
        valid, quarantined = validate_person_frame(source, raw)
        return _store(con, plan, run, source, raw.height, valid, quarantined)
    raw = warehouse.read_table(
        con,
        f"SELECT * EXCLUDE (contract_id, run_id, source) FROM work.raw_{kind} "
        "WHERE contract_id = $contract_id AND run_id = $run_id AND source = $source "
        "ORDER BY _file, _line",
        scope,
    )
    known = None
    if kind == "sick_leave_spells":
        roster = plan.roster_source
        known = warehouse.read_table(
            con,
            "SELECT person_id FROM work.staging_employee_roster "
            "WHERE contract_id = $contract_id AND run_id = $run_id AND source = $source",
            {**run.scope, "source": roster},
        )["person_id"]
        if known.len() == 0:
            raise RuntimeError(f"validate source {roster!r} before {source_name!r}")
    valid, quarantined = validate_frame(kind, raw, known, latest_date(plan))
    return _store(con, plan, run, source, raw.height, valid, quarantined)


def _store(
    con: duckdb.DuckDBPyConnection,
    plan: Plan,
    run: Run,
    source: dict[str, Any],
    delivered: int,
    valid: pl.DataFrame,
    quarantined: pl.DataFrame,
) -> ValidationSummary:
    """Write a source's staging, quarantine and reconciliation rows in one transaction,
    then reject the delivery when too much of it broke a rule."""
    source_name, kind = source["name"], source["kind"]
    scope = {**run.scope, "source": source_name}
    quarantined = quarantined.cast(QUARANTINE_SCHEMA_NO_SOURCE)  # type: ignore[arg-type]
    summary = ValidationSummary(
        source=source_name,
        delivered=delivered,
        loaded=valid.height,
        quarantined=quarantined.height,
        by_rule=dict(sorted(quarantined["rule"].value_counts().iter_rows())),
    )
    if summary.delivered != summary.loaded + summary.quarantined:  # pragma: no cover - guard
        raise RuntimeError(f"reconciliation failed for {source_name}: {summary}")
    reconciliation = pl.DataFrame(
        [{k: v for k, v in summary.to_dict().items() if k not in ("by_rule", "source")}]
    )
    limit = float(source.get("max_quarantine_share", DEFAULT_MAX_QUARANTINE_SHARE))
    share = summary.quarantined / summary.delivered if summary.delivered else 0.0
    from utfall.warehouse.layout import (
        GENERIC_STAGED_COLUMNS,
        KIND_COLUMNS,
        PERSON_KINDS_WITH_VALUES,
        PERSON_STAGED_COLUMNS,
    )

    columns = {**KIND_COLUMNS, **GENERIC_STAGED_COLUMNS, **PERSON_STAGED_COLUMNS}[kind]
    staged = valid.select("_file", "_line", "person_id", *columns)
    with warehouse.transaction(con):
        warehouse.insert_rows(con, f"work.staging_{kind}", staged, scope)
        if kind in GENERIC_KINDS or kind in PERSON_KINDS_WITH_VALUES:
            warehouse.insert_rows(con, "work.staging_values", long_values(source, valid), scope)
        warehouse.insert_rows(con, "work.quarantine_rows", quarantined, scope)
        warehouse.insert_rows(con, "work.reconciliation", reconciliation, scope)
    if share > limit:
        top = ", ".join(
            f"{r}: {n}" for r, n in sorted(summary.by_rule.items(), key=lambda kv: -kv[1])[:5]
        )
        raise DeliveryRejected(
            f"source {source_name!r}: {summary.quarantined} of {summary.delivered} rows "
            f"({share:.1%}) broke a rule, above the plan's limit of {limit:.1%} "
            f"(max_quarantine_share). Rules: {top}. Nothing was published; see "
            f"quarantine.by_run WHERE run_id = '{run.run_id}'."
        )
    return summary
