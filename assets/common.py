"""What every contract asset shares: its key under the contract's prefix, and opening the
warehouse for the utfall run that belongs to the Dagster run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster import AssetKey

from utfall import person_metrics, warehouse
from utfall.errors import WarehouseError
from utfall.payments import periods
from utfall.pipeline import key_for, start_run
from utfall.plan import Plan
from utfall.warehouse import runs
from utfall.warehouse.runs import Run

#: Asset groups by stage (Dagster group names allow letters, digits and underscores).
GROUPS = {s: s for s in ("ingest", "validate", "measure", "pay", "report")}


def key(plan: Plan, *parts: str) -> AssetKey:
    """Asset keys are prefixed by the contract: the contract is the namespace."""
    return AssetKey([plan.contract_id, *parts])


#: Run tags choosing the payment period of a plan with `payment.periods` (as `utfall run
#: --period NAME [--provisional]`); without them the first period not yet approved.
PERIOD_TAG = "utfall/payment_period"
PROVISIONAL_TAG = "utfall/provisional"


def payment_period(context, con, plan: Plan) -> periods.PaymentPeriod | None:
    """The payment period this Dagster run measures (from its tags and the ledger). A run
    without the tag gets it from its first asset (the first period not yet approved), so
    every later asset measures the same period (an approval landing mid-run then stops the
    run instead of switching period) and the Dagster UI shows it."""
    run_id = context.run.run_id
    stored = context.instance.get_run_by_id(run_id)
    tags = (stored or context.run).tags
    name = tags.get(PERIOD_TAG) or None
    chosen = periods.select(
        con,
        plan,
        name,
        provisional=tags.get(PROVISIONAL_TAG, "").lower() in ("1", "true", "yes"),
    )
    if chosen is not None and name is None:
        context.instance.add_run_tags(run_id, {PERIOD_TAG: chosen.name})
    return chosen


@contextmanager
def open_run(context, resource: str, start: bool = False, measure: bool = False) -> Iterator[tuple]:
    """(connection, plan, run, contract resource, key) for this Dagster run's utfall run.

    The Dagster run id is the utfall run id, so all assets of one job run write one
    utfall run, which the report asset publishes. An asset materialised on its own (not
    in the contract's job) has no run to join and says so. With `measure` (data quality
    and after), the plan is the one the run's payment period measures
    (`periods.measured_plan`); the run's first asset checks the period can be measured.
    """
    contract = getattr(context.resources, resource)
    plan = contract.plan()
    if start:  # a payment the run cannot compute stops it before it opens the warehouse
        person_metrics.require_payment_inputs(plan)
    db = context.resources.duckdb
    key_bytes = key_for(Path(db.database))
    with db.get_connection() as con:
        warehouse.prepare(con, db.database)
        if start or measure:
            chosen = payment_period(context, con, plan)
            if measure:
                plan = periods.measured_plan(plan, chosen)
        if start:
            run = start_run(con, plan, key_bytes, origin="dagster", run_id=context.run.run_id)
        else:
            run = Run(context.run.run_id, plan.contract_id)
            if runs.get(con, run.run_id) is None:
                raise WarehouseError(
                    f"Dagster run {context.run.run_id} has not ingested {plan.contract_id}'s "
                    f"deliveries: materialise the whole measure job of the contract, whose "
                    "stages publish together"
                )
        yield con, plan, run, contract, key_bytes
