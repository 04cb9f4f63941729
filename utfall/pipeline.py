"""The stages of a measurement run, each reading and writing the run's rows.

A run is recorded in `ledger.runs` when it starts; every stage writes rows under the run's
id, which readers do not see; the last stage publishes the run in one transaction. Dagster
assets call the stages one by one (one Dagster run = one utfall run); `utfall run` calls
them in order in one process. A stage that fails marks the run failed or rejected, and the
previously published state stays as it was.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from utfall import (
    metrics,
    person_metrics,
    personnummer,
    recompute,
    replication,
    report,
    snapshot,
    warehouse,
)
from utfall.cohort import CohortCheck, CohortError, check_cohort
from utfall.errors import QualityBlocked, UserError, WarehouseError
from utfall.estimators.result import EffectResult
from utfall.ingest import Delivery, ingest_source
from utfall.payments import periods
from utfall.plan import GENERIC_KINDS, METRICS, Plan
from utfall.validate import DeliveryRejected, ValidationSummary, staged_generic, validate_source
from utfall.warehouse import marts, runs
from utfall.warehouse.deliveries import changes_since_published, describe_change, history_run
from utfall.warehouse.runs import Run

#: Errors that mean the delivery was refused (the run is `rejected`, not `failed`).
REJECTIONS = (DeliveryRejected, QualityBlocked, CohortError)


def key_for(warehouse_path: Path) -> bytes:
    """The pseudonymisation key for this warehouse (env var, else a key file beside it)."""
    return personnummer.load_key(Path(warehouse_path).with_suffix(".pseudonym.key"))


def validation_order(plan: Plan) -> list[str]:
    """Source names with the roster first (if the plan has one): spells are checked against
    valid employees."""
    roster = plan.roster_source
    first = [roster] if roster else []
    return first + [s["name"] for s in plan.sources if s["name"] != roster]


def has_panel(plan: Plan) -> bool:
    """Whether the plan measures outcomes per unit and period (the outcome panel stage)."""
    return any(METRICS[o["metric"]].data == "unit_panel" for o in plan.outcomes)


def start_run(
    con: duckdb.DuckDBPyConnection,
    plan: Plan,
    key: bytes,
    *,
    origin: str = "cli",
    run_id: str | None = None,
) -> Run:
    return runs.start(
        con,
        plan.contract_id,
        plan.hash,
        plan_file=plan.path.name,
        key_fingerprint=personnummer.key_fingerprint(key),
        origin=origin,
        run_id=run_id,
    )


def stage(con: duckdb.DuckDBPyConnection, plan: Plan, run: Run, name: str, fn: Callable[[], Any]):
    """Run one stage of `run`: check the run may proceed, then call `fn`; on any error mark
    the run rejected (a refused delivery) or failed, and re-raise."""
    try:
        runs.enter_stage(con, run, plan.hash, name)
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        if name != "report and publish":  # the run is no longer `running` once published
            runs.record_timing(
                con, run, name, time.perf_counter() - wall, time.process_time() - cpu
            )
        return out
    except BaseException as exc:
        status = "rejected" if isinstance(exc, REJECTIONS) else "failed"
        text = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        try:
            runs.fail(con, run, status, f"{name}: {text}")
        except duckdb.Error:  # pragma: no cover - the original error matters more
            pass
        raise


def _scoped(con: duckdb.DuckDBPyConnection, table: str, run: Run, order: str) -> pl.DataFrame:
    return warehouse.read_table(
        con,
        f"SELECT * EXCLUDE (contract_id, run_id) FROM {table} "
        f"WHERE contract_id = $contract_id AND run_id = $run_id ORDER BY {order}",
        run.scope,
    )


def estimate_effects(con: duckdb.DuckDBPyConnection, plan: Plan, run: Run) -> list[EffectResult]:
    """Run the plan's counterfactual method for every outcome, on the frame its data shape
    asks for (the outcome panel, or the person table). An EstimationError stops the run
    with its message; each effect's restricted detail is stored apart from its result."""
    panel = _scoped(con, "work.outcome_panel", run, "outcome, unit_id, period_start")
    results = recompute.fit_effects(
        plan,
        lambda outcome_id, shape: recompute.estimator_frame(
            con, plan, run, outcome_id, shape, panel
        ),
    )
    rows = pl.DataFrame(
        [
            {
                "outcome": r.outcome,
                "method": r.method,
                "estimate": r.estimate,
                "std_error": r.std_error,
                "ci_low": r.ci_low,
                "ci_high": r.ci_high,
                "confidence": r.confidence,
                # NULL, not NaN, where the outcome has no relative effect (marts read it)
                "relative_estimate": r.relative_estimate
                if recompute.finite(r.relative_estimate)
                else None,
                "n_treated": r.n_treated,
                "n_comparison": r.n_comparison,
                "plan_hash": plan.hash,
                "result_json": report.dumps(r.to_dict()),
                "restricted_json": report.dumps(r.restricted_dict()),
            }
            for r in results
        ]
    )
    # the persons behind each person-data estimate, counted per arm and reason (the report's
    # population flow; `utfall verify` recomputes them from the staged rows)
    flows = recompute.flow_rows(recompute.person_flows(con, plan, run), plan.min_cell_size)
    with warehouse.transaction(con):
        warehouse.insert_rows(con, "work.effects", rows, run.scope)
        if flows.height:
            warehouse.insert_rows(con, "work.person_flow", flows, run.scope)
    return results


def load_effects(con: duckdb.DuckDBPyConnection, plan: Plan, run: Run) -> list[dict[str, Any]]:
    """The run's stored effects, in the plan's order of outcomes; refused when they were
    computed under another plan."""
    rows = _scoped(con, "work.effects", run, "outcome")
    stale = rows.filter(pl.col("plan_hash") != plan.hash)
    if stale.height:
        raise WarehouseError(
            f"the stored effects of run {run.run_id} were computed under plan "
            f"{stale['plan_hash'][0]}, not {plan.hash}; re-run the measurement"
        )
    # in the plan's order of outcomes, as utfall verify recomputes them (not by outcome id)
    order = {o["id"]: i for i, o in enumerate(plan.outcomes)}
    effects = [json.loads(t) for t in rows["result_json"]]
    return sorted(effects, key=lambda e: order[e["outcome"]])


def propose_payment(con: duckdb.DuckDBPyConnection, plan: Plan, run: Run) -> dict[str, Any]:
    """Payment under the plan's terms from the run's stored effect."""
    effects = {e["outcome"]: e for e in load_effects(con, plan, run)}
    outcome = plan.payment["outcome"]
    if outcome not in effects:
        raise WarehouseError(f"run {run.run_id} has no effect estimate for {outcome!r}")
    inputs = recompute.payment_inputs(con, plan, run)
    proposal = recompute.propose_payment(plan, [effects[outcome]], inputs)
    lines = pl.DataFrame(
        [
            {
                "plan_hash": plan.hash,
                "rule": line["rule"],
                "kind": line["kind"],
                "description": line["description"],
                "achievement": line["achievement"],
                "max_amount": line["max_amount"],
                "amount": line["amount"],
                "currency": proposal["currency"],
                "status": proposal["status"],
            }
            for line in proposal["lines"]
        ]
    ).with_columns(
        pl.col("achievement").cast(pl.Decimal(10, 6)),
        pl.col("max_amount").cast(pl.Decimal(18, 2)),
        pl.col("amount").cast(pl.Decimal(18, 2)),
    )
    summary = pl.DataFrame({"plan_hash": [plan.hash], "proposal_json": [report.dumps(proposal)]})
    with warehouse.transaction(con):
        warehouse.insert_rows(con, "work.payments_proposed", lines, run.scope)
        warehouse.insert_rows(con, "work.payment_proposal", summary, run.scope)
    return proposal


def assemble_report(con: duckdb.DuckDBPyConnection, plan: Plan, run: Run) -> dict[str, Any]:
    """Gather the run's stored results into the report document (no computation)."""
    return recompute.report_document(plan, **report_inputs(con, plan, run))


def report_inputs(con: duckdb.DuckDBPyConnection, plan: Plan, run: Run) -> dict[str, Any]:
    """What the report is made of: the run's panel, effects and proposal, and the recorded
    context (`recompute.CONTEXT_KEYS`) that a replication package carries."""
    info = runs.get(con, run.run_id) or {}
    if info.get("plan_hash") != plan.hash:
        raise WarehouseError(
            f"run {run.run_id} was made with plan {info.get('plan_hash')}, not {plan.hash}"
        )
    inputs = warehouse.read_table(
        con,
        "SELECT source, file, sha256, bytes, rows FROM ledger.deliveries "
        "WHERE run_id = $run_id ORDER BY source, file",
        {"run_id": run.run_id},
    ).to_dicts()
    recon = (
        _scoped(con, "work.reconciliation", run, "source")
        .select("source", "delivered", "loaded", "quarantined")
        .to_dicts()
    )
    by_rule = warehouse.read_table(
        con,
        "SELECT source, rule, count(*) AS n FROM work.quarantine_rows "
        "WHERE contract_id = $contract_id AND run_id = $run_id GROUP BY ALL ORDER BY source, rule",
        run.scope,
    )
    for r in recon:
        sub = by_rule.filter(pl.col("source") == r["source"])
        r["by_rule"] = dict(zip(sub["rule"], sub["n"], strict=True))
    panel = _scoped(con, "work.outcome_panel", run, "outcome, unit_id, period_start")
    proposal_rows = _scoped(con, "work.payment_proposal", run, "plan_hash")
    if proposal_rows.height != 1 or proposal_rows["plan_hash"][0] != plan.hash:
        raise WarehouseError(f"run {run.run_id} has no payment proposal under plan {plan.hash}")
    proposal = json.loads(proposal_rows["proposal_json"][0])
    cohort = _scoped(con, "work.cohort_units", run, "status, unit_id")
    quality = _scoped(con, "work.quality_results", run, "source, expectation")
    context = {
        "inputs": inputs,
        "reconciliation": recon,
        "notes": run_notes(con, plan, run, info),
        "cohort": cohort.to_dicts(),
        "quality": quality.to_dicts(),
        "population": report.population_counts(con, plan, run),
    }
    if proposal.get("period"):  # what verify needs to propose for the same period
        context["payment_period"] = {
            **{k: proposal["period"][k] for k in ("name", "kind", "through", "provisional")},
            "earlier": proposal["earlier"],
        }
    return {
        "context": context,
        "panel": panel,
        "effects": load_effects(con, plan, run),
        "payment": proposal,
        "persons": stored_persons(con, plan, run),
    }


def stored_persons(con: duckdb.DuckDBPyConnection, plan: Plan, run: Run) -> dict[str, Any]:
    """The report's person counts: the flows stored with the effects (work.person_flow) and
    the lab rows per conversion (recompute.persons_section)."""
    from utfall import person_metrics

    rows = _scoped(con, "work.person_flow", run, "outcome, arm, seq")
    return recompute.persons_section(
        recompute.flows_from_rows(plan, rows), person_metrics.lab_conversions(con, plan, run)
    )


def run_notes(
    con: duckdb.DuckDBPyConnection, plan: Plan, run: Run, info: dict[str, Any]
) -> dict[str, Any]:
    """What a validator must know about this run against the published one: changed
    re-deliveries and a changed pseudonymisation key."""
    changes = [describe_change(c) for c in changes_since_published(con, run)]
    key_note = key_change(con, plan, run, info.get("key_fingerprint"))
    return {
        "key_fingerprint": info.get("key_fingerprint"),
        "delivery_changes": changes,
        "key_change": key_note,
    }


def key_change(
    con: duckdb.DuckDBPyConnection, plan: Plan, run: Run, fingerprint: str | None
) -> str | None:
    """A note when the key differs from the published run's: pseudonyms do not join."""
    published = runs.published_run(con, plan.contract_id)
    if not published or published["run_id"] == run.run_id:
        return None
    if published["key_fingerprint"] == fingerprint:
        return None
    return (
        f"the pseudonymisation key changed since run {published['run_id']} "
        f"({published['key_fingerprint']} -> {fingerprint}): pseudonyms are not comparable "
        "with that run"
    )


def publish_report(
    con: duckdb.DuckDBPyConnection, plan: Plan, run: Run, out_dir: Path
) -> dict[str, Path]:
    """Write the report and its replication package beside `out_dir`, publish the run (with
    its ledger entry), then move the package into place (keeping an issued one).

    The warehouse commit comes first and the directory swap right after it, so a reader
    never sees a report whose numbers the warehouse has not published.
    """
    parts = report_inputs(con, plan, run)
    doc = recompute.report_document(plan, **parts)
    out_dir = Path(out_dir)
    tmp = out_dir.parent / f".{out_dir.name}.{run.run_id}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    written = report.write_report(doc, tmp, run_id=run.run_id)
    write_data_docs(con, plan, run, tmp)
    package = replication.write_package(con, plan, run, tmp, parts, out_dir)
    marts.record_plan(con, plan, run)
    runs.publish(con, run, plan.hash, also=package.record)
    old = out_dir.parent / f".{out_dir.name}.{run.run_id}.old"
    if out_dir.exists():
        out_dir.replace(old)
    tmp.replace(out_dir)
    if old.exists():
        replication.retire(old, out_dir, package.manifest["version"])
    try:  # the analysts' copy; the run is published whether or not it can be written
        snapshot.export(con)
    except snapshot.SnapshotError as exc:
        print(f"warning: {exc}", file=sys.stderr)
    return {name: out_dir / name for name in written}


@dataclass(frozen=True)
class RunResult:
    run_id: str
    deliveries: list[Delivery]
    validations: list[ValidationSummary]
    effects: list[EffectResult]
    payment: dict[str, Any]
    report_paths: dict[str, Path]
    notes: list[str]


def run(
    plan: Plan,
    warehouse_path: Path,
    deliveries_dir: Path,
    out_dir: Path,
    progress: Callable[[str], None] | None = None,
    *,
    period: str | None = None,
    provisional: bool = False,
) -> RunResult:
    """All stages in order, in this process; `progress` gets one line per finished step.

    With payment periods in the plan, the run measures `period` (default: the first one
    not yet approved) up to its `through`, given what the earlier periods paid as approved
    in the ledger (`utfall.payments.periods.select`; `provisional` lets an unapproved
    earlier period count as paid nothing). Ingest and validation see the whole delivery."""
    say = progress or (lambda msg: print(msg, file=sys.stderr))
    key = key_for(warehouse_path)
    # ingest + validate per source, cohort (with a roster), quality, panel (with
    # outcomes per unit and period), effects, payment, report
    steps = 2 * len(plan.sources) + 4 + bool(plan.roster_source) + has_panel(plan)
    n = 0
    notes: list[str] = []

    person_metrics.require_payment_inputs(plan)  # before anything is opened or written
    con = warehouse.connect(warehouse_path)
    try:
        chosen = periods.select(con, plan, period, provisional=provisional)
        measured = periods.measured_plan(plan, chosen)
        current = start_run(con, plan, key)

        def step(label: str, fn: Callable[[], Any], describe: Callable[[Any], str]) -> Any:
            nonlocal n
            n += 1
            t0 = time.perf_counter()
            out = stage(con, plan, current, label, fn)
            say(f"[{n}/{steps}] {label}: {describe(out)} ({time.perf_counter() - t0:.1f} s)")
            return out

        say(f"run {current.run_id} of {plan.contract_id} (plan {plan.hash[:19]}...)")
        if chosen is not None:
            say(f"  {period_line(chosen)}")
            if chosen.provisional:
                notes.append(period_line(chosen))
        changed_key = key_change(con, plan, current, personnummer.key_fingerprint(key))
        if changed_key:
            notes.append(changed_key)
            say(f"  warning: {changed_key}")
        deliveries: list[Delivery] = []
        for s in plan.sources:
            deliveries += step(
                f"ingest {s['name']}",
                lambda s=s: ingest_source(con, plan, current, s["name"], deliveries_dir, key),
                lambda d: ", ".join(f"{x.file} {x.rows} rows" for x in d),
            )
        for change in changes_since_published(con, current):
            notes.append(describe_change(change))
            say(f"  note: {notes[-1]}")
        validations = []
        for name in validation_order(plan):
            validations.append(
                step(
                    f"validate {name}",
                    lambda name=name: validate_source(con, plan, current, name),
                    lambda v: f"{v.loaded} loaded, {v.quarantined} quarantined",
                )
            )
            if name == plan.roster_source:
                cohort: CohortCheck = step(
                    "cohort units",
                    lambda: check_cohort(con, plan, current),
                    lambda c: (
                        f"{len(c.missing)} plan unit(s) missing, "
                        f"{len(c.not_in_plan)} roster unit(s) not in the plan"
                    ),
                )
                for m in cohort.messages():
                    notes.append(m)
                    say(f"  warning: {m}")
        quality = step(
            "data quality",
            lambda: check_quality(con, measured, current, deliveries_dir, deliveries),
            lambda rs: f"{sum(r['success'] for r in rs)} of {len(rs)} expectations met",
        )
        for r in quality:
            if not r["success"]:
                notes.append(
                    f"{r['source']}: {r['expectation']} ({r['severity']}): {r['observed']}"
                )
                say(f"  warning: {notes[-1]}")
        if has_panel(plan):
            step(
                "outcome panel",
                lambda: metrics.build_outcome_panel(con, measured, current),
                lambda p: f"{p.height} unit-period rows",
            )
        effects = step(
            "effects",
            lambda: estimate_effects(con, measured, current),
            lambda rs: "; ".join(f"{r.outcome} {_effect_text(r)}" for r in rs),
        )
        for r in effects:
            for w in report.effect_warnings(r.to_dict()):
                notes.append(f"{r.outcome} ({r.method}): {w}")
                say(f"  warning: {notes[-1]}")
        payment = step(
            "payment",
            lambda: propose_payment(con, measured, current),
            lambda p: f"{p['total']} {p['currency']} proposed",
        )
        paths = step(
            "report and publish",
            lambda: publish_report(con, measured, current, out_dir),
            report.written_line,
        )
    finally:
        con.close()
    return RunResult(current.run_id, deliveries, validations, effects, payment, paths, notes)


def period_line(chosen: periods.PaymentPeriod) -> str:
    """What a run says of the payment period it measures."""
    earlier = ", ".join(
        f"{e['period']['name']} (approved, version {e['version']})"
        if e["approved"]
        else f"{e['period']['name']} (NOT approved: counted as paid nothing)"
        for e in chosen.earlier
    )
    kind = "PROVISIONAL " if chosen.provisional else ""
    return f"{kind}payment period {chosen.name} ({chosen.kind}) through {chosen.through}" + (
        f"; earlier: {earlier}" if earlier else ""
    )


def _effect_text(r: EffectResult) -> str:
    """The progress line's effect: relative when there is one, else absolute."""
    if recompute.finite(r.relative_estimate):
        return f"{r.relative_estimate:+.1%}"
    return f"{r.estimate:+.4g} (CI {r.ci_low:.4g} to {r.ci_high:.4g})"


def check_quality(
    con: duckdb.DuckDBPyConnection,
    plan: Plan,
    run: Run,
    deliveries_dir: Path,
    deliveries: list[Delivery],
) -> list[dict[str, Any]]:
    """Completeness and statistical expectations (Great Expectations) on every source's
    valid rows, against the contract's last accepted delivery with other files, and the sender's
    control file when the plan names one. Results and the monthly profiles are stored
    with the run (a profile becomes history only if the run is published); failed
    blocking expectations then stop the run before measurement."""
    from utfall import quality

    config = plan.quality
    if plan.unit_check == "warn" and config["expectations"]["units_present"]["severity"] == "block":
        # The plan accepts missing units (listed in the report): the same units must not
        # then block the run through the completeness suite.
        config["expectations"]["units_present"]["severity"] = "warn"
    results: list[quality.ExpectationResult] = []
    profiles = []
    earlier = history_run(con, run)
    delivered = dict(
        warehouse.read_table(
            con,
            "SELECT source, delivered FROM work.reconciliation "
            "WHERE contract_id = $contract_id AND run_id = $run_id",
            run.scope,
        ).iter_rows()
    )
    if config.get("control_file"):
        results.append(
            quality.control_file_result(
                deliveries_dir / config["control_file"],
                [(d.file, d.rows or 0, d.sha256) for d in deliveries],
            )
        )
    for s in plan.sources:
        kind = s["kind"]
        if kind in GENERIC_KINDS:
            staged = staged_generic(con, plan, run, s["name"]).drop("_file", "_line")
        else:
            staged = warehouse.read_table(
                con,
                f"SELECT * EXCLUDE (contract_id, run_id, source, _file, _line) "
                f"FROM work.staging_{kind} WHERE contract_id = $contract_id "
                "AND run_id = $run_id AND source = $source",
                {**run.scope, "source": s["name"]},
            )
        history = None
        if earlier:
            history = warehouse.read_table(
                con,
                "SELECT month, rows FROM ledger.profiles WHERE contract_id = $contract_id "
                "AND run_id = $run_id AND source = $source ORDER BY month",
                {"contract_id": plan.contract_id, "run_id": earlier, "source": s["name"]},
            )
        profiles.append((s["name"], quality.monthly_profile(kind, staged, plan)))
        results += quality.check_source(
            kind, s["name"], staged, plan, config, history, delivered_rows=delivered.get(s["name"])
        )
    stored = pl.DataFrame(
        [
            {
                "source": r.source,
                "expectation": r.expectation,
                "severity": r.severity,
                "success": bool(r.success),
                "observed": r.observed,
                "details_json": json.dumps(r.details, sort_keys=True, default=str),
            }
            for r in results
        ],
        schema={
            "source": pl.String,
            "expectation": pl.String,
            "severity": pl.String,
            "success": pl.Boolean,
            "observed": pl.String,
            "details_json": pl.String,
        },
    )
    with warehouse.transaction(con):
        warehouse.insert_rows(con, "work.quality_results", stored, run.scope)
        for name, profile in profiles:
            warehouse.insert_rows(con, "ledger.profiles", profile, {**run.scope, "source": name})
    quality.raise_if_blocked(results)
    return [r.to_dict() for r in results]


def write_data_docs(con: duckdb.DuckDBPyConnection, plan: Plan, run: Run, out_dir: Path) -> None:
    """GX's Data Docs for the run's stored expectation results, into `out_dir/data_docs`.

    The site's run folder is named after the plan's measurement end, not the clock, so a
    re-run writes the same paths."""
    import datetime as dt

    from utfall.quality import ExpectationResult
    from utfall.quality import write_data_docs as render

    rows = _scoped(con, "work.quality_results", run, "source, expectation")
    by_source: dict[str, list[ExpectationResult]] = {}
    for r in rows.iter_rows(named=True):
        by_source.setdefault(r["source"], []).append(
            ExpectationResult(
                r["source"],
                r["expectation"],
                r["severity"],
                r["success"],
                r["observed"],
                json.loads(r["details_json"] or "{}"),
            )
        )
    if by_source:
        end = plan.period("measurement")[1]
        render(
            by_source,
            out_dir,
            run_name=plan.contract_id,
            run_time=dt.datetime(end.year, end.month, end.day, tzinfo=dt.UTC),
        )
