"""Staging layer: validated rows per source, quarantine of the rest, blocking checks; the
roster's units against the plan; data-quality expectations before measurement."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetsDefinition,
    MetadataValue,
    asset,
    asset_check,
)

from utfall import warehouse
from utfall.assets.common import GROUPS, key, open_run
from utfall.assets.metadata import column_schema, staging_preview
from utfall.cohort import check_cohort
from utfall.pipeline import check_quality, stage
from utfall.plan import GENERIC_KINDS, Plan
from utfall.validate import failures, staged_generic, validate_source
from utfall.warehouse.runs import Run


def staging_asset(plan: Plan, source: dict, resource: str) -> AssetsDefinition:
    name = source["name"]
    roster = plan.roster_source
    deps = [key(plan, "raw", name)]
    if roster and name != roster:
        deps.append(key(plan, "staging", roster))

    @asset(
        key=key(plan, "staging", name),
        deps=deps,
        group_name=GROUPS["validate"],
        kinds={"duckdb", "pandera"},
        required_resource_keys={"duckdb", resource},
        metadata={"dagster/column_schema": column_schema(source["kind"], typed=True)},
        description=f"Validated, typed rows of '{name}'; failing rows go to quarantine with "
        "the rule they broke."
        + (" Then the plan's units are checked against the roster." if name == roster else ""),
    )
    def _staging(context: AssetExecutionContext) -> None:
        with open_run(context, resource) as (con, plan_, run, _c, _k):
            summary = stage(
                con, plan_, run, f"validate {name}", lambda: validate_source(con, plan_, run, name)
            )
            meta = {
                "delivered": summary.delivered,
                "loaded": summary.loaded,
                "quarantined": summary.quarantined,
                "quarantined_by_rule": MetadataValue.json(summary.by_rule),
                **staging_preview(con, plan_, run, name, source["kind"]),
            }
            if name == roster:
                cohort = stage(
                    con, plan_, run, "cohort units", lambda: check_cohort(con, plan_, run)
                )
                meta["cohort_messages"] = MetadataValue.json(cohort.messages())
        context.add_output_metadata(meta)

    return _staging


def quality_asset(plan: Plan, resource: str) -> AssetsDefinition:
    @asset(
        key=key(plan, "staging", "data_quality"),
        deps=[key(plan, "staging", s["name"]) for s in plan.sources],
        group_name=GROUPS["validate"],
        kinds={"duckdb", "great_expectations"},
        required_resource_keys={"duckdb", resource},
        description="Completeness and statistical expectations (Great Expectations) on every "
        "source; failed blocking ones stop the run before measurement.",
    )
    def _quality(context: AssetExecutionContext) -> None:
        with open_run(context, resource, measure=True) as (con, plan_, run, contract, _k):
            from utfall.ingest import Delivery

            ledger = warehouse.read_table(
                con,
                "SELECT source, file, sha256, bytes, rows FROM ledger.deliveries "
                "WHERE run_id = $run_id ORDER BY source, file",
                {"run_id": run.run_id},
            )
            deliveries = [Delivery(**r) for r in ledger.to_dicts()]
            results = stage(
                con,
                plan_,
                run,
                "data quality",
                lambda: check_quality(con, plan_, run, contract.deliveries(plan_), deliveries),
            )
        context.add_output_metadata(
            {
                "dagster/row_count": len(results),
                "met": sum(r["success"] for r in results),
                "expectations": len(results),
                "failed": MetadataValue.json(
                    [
                        {k: r[k] for k in ("source", "expectation", "severity", "observed")}
                        for r in results
                        if not r["success"]
                    ]
                ),
            }
        )

    return _quality


def staging_checks(plan: Plan, source: dict, resource: str) -> list[AssetChecksDefinition]:
    name = source["name"]
    kind = source["kind"]
    asset_key = key(plan, "staging", name)

    def _counts(context: AssetCheckExecutionContext) -> dict:
        scope = {
            "contract_id": plan.contract_id,
            "run_id": context.run.run_id,
            "source": name,
        }
        where = "WHERE contract_id = $contract_id AND run_id = $run_id AND source = $source"
        with context.resources.duckdb.get_connection() as con:
            return {
                "delivered": warehouse.scalar(
                    con, f"SELECT count(*) FROM work.raw_{kind} {where}", scope
                ),
                "loaded": warehouse.scalar(
                    con, f"SELECT count(*) FROM work.staging_{kind} {where}", scope
                ),
                "quarantined": warehouse.scalar(
                    con, f"SELECT count(*) FROM work.quarantine_rows {where}", scope
                ),
            }

    @asset_check(
        asset=asset_key,
        name="reconciles",
        blocking=True,
        required_resource_keys={"duckdb"},
        description="Rows delivered = rows loaded + rows quarantined (this run).",
    )
    def _reconciles(context: AssetCheckExecutionContext) -> AssetCheckResult:
        c = _counts(context)
        return AssetCheckResult(
            passed=c["delivered"] == c["loaded"] + c["quarantined"],
            severity=AssetCheckSeverity.ERROR,
            metadata=c,
        )

    @asset_check(
        asset=asset_key,
        name="pandera_contract",
        blocking=True,
        required_resource_keys={"duckdb"},
        description="The staged rows satisfy the source's Pandera set model.",
    )
    def _contract(context: AssetCheckExecutionContext) -> AssetCheckResult:
        from utfall.schemas import MODELS, generic

        with context.resources.duckdb.get_connection() as con:
            if kind in GENERIC_KINDS:
                set_model = generic.set_schema(source)
                run = Run(context.run.run_id, plan.contract_id)
                rows = staged_generic(con, plan, run, name)
            else:
                # the person kinds' row checks are their domain module's (utfall.kinds): the
                # staged rows then need a person on every row (the DDL types the rest)
                _, set_model = MODELS.get(kind) or (None, _person_rows_model())
                rows = warehouse.read_table(
                    con,
                    f"SELECT * FROM work.staging_{kind} WHERE contract_id = $contract_id "
                    "AND run_id = $run_id AND source = $source ORDER BY _file, _line",
                    {"contract_id": plan.contract_id, "run_id": context.run.run_id, "source": name},
                )
        failed = failures(set_model, rows)
        return AssetCheckResult(
            passed=failed.height == 0,
            severity=AssetCheckSeverity.ERROR,
            metadata={"rows": rows.height, "failures": failed.height},
        )

    return [_reconciles, _contract]


def _person_rows_model():
    import pandera.polars as pa

    return pa.DataFrameSchema({"person_id": pa.Column(str, nullable=False)})


def quality_checks(plan: Plan) -> list[AssetChecksDefinition]:
    """One check per source on the data-quality asset: the source's expectation results
    of this run (ERROR when a blocking one failed, WARN when a warning one did)."""
    return [_quality_check(plan, s["name"]) for s in plan.sources]


def _quality_check(plan: Plan, name: str) -> AssetChecksDefinition:
    """The check of one source (a factory, so each check keeps its own `name`)."""

    @asset_check(
        asset=key(plan, "staging", "data_quality"),
        name=f"expectations_{name}",
        required_resource_keys={"duckdb"},
        description=f"Great Expectations suite of source '{name}' for this run.",
    )
    def _check(context: AssetCheckExecutionContext) -> AssetCheckResult:
        with context.resources.duckdb.get_connection() as con:
            rows = warehouse.read_table(
                con,
                "SELECT expectation, severity, success, observed FROM work.quality_results "
                "WHERE contract_id = $contract_id AND run_id = $run_id AND source = $source "
                "ORDER BY expectation",
                {"contract_id": plan.contract_id, "run_id": context.run.run_id, "source": name},
            ).to_dicts()
        passed, severity = check_severity(rows)
        return AssetCheckResult(
            passed=passed,
            severity=severity,
            metadata={
                "expectations": len(rows),
                "failed": MetadataValue.json([r for r in rows if not r["success"]]),
            },
        )

    return _check


def check_severity(rows: list[dict]) -> tuple[bool, AssetCheckSeverity]:
    """(passed, severity) of a source's expectation results: a failed `block` expectation
    is an ERROR (it also stopped the run), a failed `warn` one a WARN."""
    failed = [r for r in rows if not r["success"]]
    blocking = any(r["severity"] == "block" for r in failed)
    return not failed, AssetCheckSeverity.ERROR if blocking else AssetCheckSeverity.WARN
