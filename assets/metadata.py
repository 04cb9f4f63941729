"""Metadata every materialisation carries: row counts, column schemas from the source
models, a preview with small cells suppressed and no identifiers, the effect chart.

Previews are aggregates (never person-level rows): a count or a mean of fewer than the
plan's `disclosure.min_cell_size` employees or rows is shown as "<n", as in the report.
"""

from __future__ import annotations

from typing import Any

import duckdb
import polars as pl
from dagster import MetadataValue, TableColumn, TableColumnConstraints, TableSchema

from utfall import warehouse
from utfall.plan import Plan
from utfall.warehouse.runs import Run

#: Columns every staged or raw row carries besides the source model's.
_ROW_COLUMNS = [
    TableColumn("source", "String", "the plan's source name"),
    TableColumn("_file", "String", "delivered file, relative to the deliveries folder"),
    TableColumn("_line", "Int64", "physical line in the file (1 = header)"),
]
#: Never in a preview: identifiers and pseudonyms.
IDENTIFIERS = frozenset({"person_id", "personnummer", "pnr_problem", "record"})


def column_schema(kind: str, typed: bool) -> MetadataValue:
    """`dagster/column_schema` from the source kind's Pandera model: the set model's typed
    columns for staging, the row model's delivered (text) columns for raw."""
    from utfall.schemas import MODELS

    if kind not in MODELS:  # generic kinds: columns depend on the plan; the fixed ones here
        return _layout_schema(kind, typed)
    rows_model, set_model = MODELS[kind]
    schema = (set_model if typed else rows_model).to_schema()
    columns = [
        TableColumn(
            name,
            str(col.dtype),
            col.description or ("keyed hash of the personnummer" if name == "person_id" else ""),
            constraints=TableColumnConstraints(nullable=bool(col.nullable)),
        )
        for name, col in schema.columns.items()
    ]
    return MetadataValue.table_schema(TableSchema(columns=columns + _ROW_COLUMNS))


def _layout_schema(kind: str, typed: bool) -> MetadataValue:
    """The fixed columns of a generic kind's warehouse table (its plan-named outcome and
    covariate columns are in the long table `staging.values`, or `values_json` in raw)."""
    from utfall.warehouse import layout

    table = f"work.{'staging' if typed else 'raw'}_{kind}"
    columns = []
    for part in layout.WORK_TABLES[table].split(", "):
        name, _, rest = part.strip().partition(" ")
        name = name.strip('"')
        if name in ("contract_id", "run_id"):
            continue
        columns.append(
            TableColumn(
                name,
                rest.replace(" NOT NULL", "") or "VARCHAR",
                "",
                constraints=TableColumnConstraints(nullable="NOT NULL" not in rest),
            )
        )
    return MetadataValue.table_schema(TableSchema(columns=columns))


def cell(n: int | None, minimum: int) -> str:
    """A count as published: "<minimum" when it is below the small-cell threshold."""
    if n is None:
        return ""
    return f"<{minimum}" if n < minimum else str(n)


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A markdown table of `rows` (identifier columns refused, not silently shown)."""
    leaked = IDENTIFIERS.intersection(columns)
    if leaked:
        raise ValueError(f"a preview must not show {sorted(leaked)}")
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join("| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |\n" for r in rows)
    return head + body


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|")


def staging_preview(
    con: duckdb.DuckDBPyConnection, plan: Plan, run: Run, source: str, kind: str
) -> dict[str, Any]:
    """Row count and rows per unit (or per month) of a staged source, suppressed."""
    table = f"work.staging_{kind}"
    scope = {**run.scope, "source": source}
    where = "WHERE contract_id = $contract_id AND run_id = $run_id AND source = $source"
    total = warehouse.scalar(con, f"SELECT count(*) FROM {table} {where}", scope)
    cols = set(con.sql(f"SELECT * FROM {table} LIMIT 0").columns)
    by = "unit_id" if "unit_id" in cols else None
    date_cols = [
        c
        for c in ("spell_start", "employed_from", "enrolled_on", "sample_date", "month")
        if c in cols
    ]
    if by is None and date_cols:
        by = f"strftime({date_cols[0]}, '%Y-%m')"
    minimum = plan.min_cell_size
    meta: dict[str, Any] = {"dagster/row_count": total}
    if by:
        counts = warehouse.read_table(
            con,
            f"SELECT {by} AS grp, count(*) AS n FROM {table} {where} GROUP BY 1 ORDER BY 1",
            scope,
        )
        label = "unit" if by == "unit_id" else "month"
        rows = [{label: g, "rows": cell(n, minimum)} for g, n in counts.iter_rows()]
        meta["preview"] = MetadataValue.md(
            f"Rows per {label} (fewer than {minimum} shown as <{minimum}):\n\n"
            + markdown_table(rows[:40], [label, "rows"])
            + (f"\n… {len(rows) - 40} more\n" if len(rows) > 40 else "")
        )
    return meta


def group_series(panel: pl.DataFrame) -> pl.DataFrame:
    """Every outcome's pooled value by group and quarter (`utfall.metrics.group_series`,
    which the report's chart draws)."""
    from utfall.metrics import group_series as one

    frames = [one(panel, o).with_columns(outcome=pl.lit(o)) for o in panel["outcome"].unique()]
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames).sort("outcome", "period_start", "group")


def panel_preview(panel: pl.DataFrame, minimum: int) -> MetadataValue:
    """Each outcome's group means by measurement quarter, small groups suppressed."""
    series = group_series(panel)
    rows = []
    for r in series.iter_rows(named=True):
        small = r["employees"] < minimum
        rows.append(
            {
                "outcome": r["outcome"],
                "quarter": str(r["period_start"]),
                "phase": r["phase"],
                "group": r["group"],
                "employees": cell(r["employees"], minimum),
                "value": None if small else r["value"],
            }
        )
    cols = ["outcome", "quarter", "phase", "group", "employees", "value"]
    shown = [r for r in rows if r["phase"] == "measurement"] or rows
    return MetadataValue.md(markdown_table(shown[:40], cols))


def effect_chart(panel: pl.DataFrame, results: list[Any], minimum: int) -> MetadataValue:
    """The report's effect chart as markdown: per outcome, treated and comparison by
    quarter as bars, and the effect with its interval."""
    series = group_series(panel)
    parts = []
    for r in results:
        # a person-level plan has no panel (nothing per quarter to draw): the effect alone
        if "outcome" in series.columns:
            sub = series.filter(pl.col("outcome") == r.outcome)
        else:
            sub = pl.DataFrame(schema={"value": pl.Float64, "period_start": pl.Date})
        top = max((v for v in sub["value"] if v is not None), default=0.0) or 1.0
        lines = [f"### {r.outcome}", ""]
        lines.append(
            f"Effect {r.estimate:+.4g} ({r.confidence:.0%} CI {r.ci_low:+.4g} to "
            f"{r.ci_high:+.4g}); relative {r.relative_estimate:+.1%} "
            f"(CI {r.relative_ci_low:+.1%} to {r.relative_ci_high:+.1%})"
        )
        lines += ["", "```"]
        for q in sub.partition_by("period_start", maintain_order=True) if sub.height else []:
            for g in q.iter_rows(named=True):
                # employees is None for a delivered panel's aggregates (no persons counted)
                if g["employees"] is not None and g["employees"] < minimum:
                    bar, value = "", f"<{minimum} employees"
                else:
                    bar, value = "█" * round(30 * g["value"] / top), f"{g['value']:.4g}"
                lines.append(
                    f"{g['period_start']} {g['phase'][:4]:<4} {g['group'][:10]:<10} {bar} {value}"
                )
        lines += ["```", ""]
        parts.append("\n".join(lines))
    return MetadataValue.md("\n".join(parts))
