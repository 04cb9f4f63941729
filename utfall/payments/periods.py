"""Which payment period a run measures, and what the earlier periods paid (from the ledger).

A plan may list `payment.periods` (interim ones, then one final; see
`utfall.payments.proposal`). A run measures one of them:

* **the period**: the one named (`utfall run --period NAME`, the Dagster run tag
  `utfall/payment_period`), else the first period the ledger has no approval for. A period
  already approved is refused: a period is approved once, so measuring it again can only
  make a package nobody may approve.
* **through**: the run measures data up to the period's `through`. `measured_plan` gives
  the plan as the measurement stages see it: the same frozen plan (same file, same hash)
  whose measurement period ends on `through` (estimators, metrics, quality, the rate card's
  events all read that end), carrying the selection in `Plan.payment_period`.
* **earlier**: what each earlier period paid, per rule, as the validator approved it: the
  approved decisions in the warehouse ledger (`ledger.decisions`), which record the
  approved proposal's lines, version and report hash. An earlier period without an
  approval stops the run with its name, unless the run is *provisional*: the unapproved
  period then counts as paid nothing (nothing was paid), the report says so, and
  `utfall approve` refuses the package.

The selection goes into the payment proposal (`period`, `earlier`) and from there into
the replication package's context.json, so `utfall verify` recomputes with the same
earlier payments without the warehouse.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from utfall.errors import UserError

if TYPE_CHECKING:
    import duckdb

    from utfall.plan import Plan


class PeriodRefused(UserError):
    """A payment period that cannot be measured now (unknown, approved, earlier pending)."""


@dataclass(frozen=True)
class PaymentPeriod:
    """The payment period a run measures, and each earlier period's payment record."""

    name: str
    kind: str
    through: dt.date
    provisional: bool
    earlier: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "through": self.through.isoformat(),
            "provisional": self.provisional,
            "earlier": [dict(e) for e in self.earlier],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PaymentPeriod:
        return cls(
            name=data["name"],
            kind=data["kind"],
            through=dt.date.fromisoformat(data["through"]),
            provisional=bool(data["provisional"]),
            earlier=tuple(dict(e) for e in data["earlier"]),
        )


def period_names(plan: Plan) -> list[str]:
    return [p["name"] for p in plan.payment.get("periods") or []]


def approvals(con: duckdb.DuckDBPyConnection, contract_id: str) -> dict[str, dict[str, Any]]:
    """period name -> the ledger's approved decision for it (a period is approved once)."""
    from utfall.warehouse import chain

    return {
        e.payload["period"]: e.payload
        for e in chain.entries(con, contract_id)
        if e.kind == "decision" and e.payload.get("decision") == "approved"
    }


def earlier_record(plan: Plan, name: str, decision: Mapping[str, Any] | None) -> dict[str, Any]:
    """One earlier period's payment as `propose(earlier=...)` reads it, with its provenance:
    the approved decision's lines, or (no approval, provisional runs only) zero per rule."""
    rules = plan.payment["rules"]
    if decision is None:
        lines = [{"rule": i, "kind": r["kind"], "amount": "0.00"} for i, r in enumerate(rules)]
        return {
            "period": {"name": name},
            "approved": False,
            "currency": plan.payment["currency"],
            "lines": lines,
            "total": "0.00",
        }
    lines = decision.get("payment_lines")
    if not lines or decision.get("payment_period") != name:
        raise PeriodRefused(
            f"period {name!r} was approved ({decision.get('reference')}) on a package that "
            "was not measured for it as a payment period, so what it paid per rule is not "
            "on record; the periods after it cannot be proposed"
        )
    return {
        "period": {"name": name},
        "approved": True,
        "currency": decision.get("currency"),
        "lines": [{"rule": x["rule"], "kind": x["kind"], "amount": x["amount"]} for x in lines],
        "total": decision.get("amount"),
        "version": decision.get("version"),
        "reference": decision.get("reference"),
        "report_sha256": decision.get("report_sha256"),
        "approved_at": decision.get("decided_at"),
    }


def select(
    con: duckdb.DuckDBPyConnection,
    plan: Plan,
    name: str | None = None,
    *,
    provisional: bool = False,
) -> PaymentPeriod | None:
    """The period a run of `plan` measures (see the module docstring); None when the plan's
    payment has no periods (then `name` must be None)."""
    periods = plan.payment.get("periods") or []
    names = [p["name"] for p in periods]
    if not periods:
        if name is not None or provisional:
            raise PeriodRefused(
                f"--period/--provisional: {plan.contract_id}'s payment has no periods; run "
                "without them to measure the whole measurement period"
            )
        return None
    approved = approvals(con, plan.contract_id)
    if name is None:
        pending = [n for n in names if n not in approved]
        if not pending:
            raise PeriodRefused(
                f"every payment period of {plan.contract_id} is approved "
                f"({', '.join(names)}); there is nothing left to measure"
            )
        name = pending[0]
    if name not in names:
        raise PeriodRefused(
            f"--period {name!r}: no such payment period in {plan.contract_id}'s plan; "
            f"its periods: {', '.join(names)}"
        )
    if name in approved:
        d = approved[name]
        raise PeriodRefused(
            f"{plan.contract_id}, period {name!r}: already approved (version "
            f"{d.get('version')}, {d.get('reference')}); a period is approved once, so it "
            "is not measured again"
        )
    index = names.index(name)
    missing = [n for n in names[:index] if n not in approved]
    if missing and not provisional:
        raise PeriodRefused(
            f"{plan.contract_id}, period {name!r}: the earlier period(s) {', '.join(missing)} "
            "are not approved, so what they paid is not known; approve them first, or "
            "measure provisionally (--provisional: unapproved periods count as paid nothing, "
            "and the package cannot be approved)"
        )
    earlier = tuple(earlier_record(plan, n, approved.get(n)) for n in names[:index])
    return PaymentPeriod(
        name=name,
        kind=periods[index]["kind"],
        through=dt.date.fromisoformat(periods[index]["through"]),
        provisional=bool(missing),
        earlier=earlier,
    )


def measured_plan(plan: Plan, period: PaymentPeriod | None) -> Plan:
    """The plan as a run of `period` measures it: the same frozen plan (file and hash)
    whose measurement period ends on the period's `through`; `plan` itself without one."""
    if period is None:
        return plan
    data = copy.deepcopy(plan.data)
    data["periods"]["measurement"]["end"] = period.through.isoformat()
    return dataclasses.replace(plan, data=data, payment_period=period)


def propose_arguments(plan: Plan) -> dict[str, Any]:
    """`payments.propose`'s period arguments for a (measured) plan."""
    period = plan.payment_period
    if period is None:
        return {}
    return {"period": period.name, "earlier": list(period.earlier)}


def annotate(proposal: dict[str, Any], period: PaymentPeriod | None) -> dict[str, Any]:
    """The proposal with the period's provenance: whether it is provisional, and each
    earlier period's record (approved package version and reference, or not approved)."""
    if period is None:
        return proposal
    out = dict(proposal)
    out["period"] = {**proposal["period"], "provisional": period.provisional}
    out["earlier"] = [dict(e) for e in period.earlier]
    return out


def decision_fields(payment: Mapping[str, Any]) -> dict[str, Any]:
    """What an approval of a period's proposal records for the periods after it: the
    period measured and each rule's amount (empty for a plan without periods)."""
    period = payment.get("period")
    if not period:
        return {}
    return {
        "payment_period": period["name"],
        "payment_lines": [
            {"rule": x["rule"], "kind": x["kind"], "amount": x["amount"]} for x in payment["lines"]
        ],
    }


def decision_problem(payment: Mapping[str, Any], period: str, decision: str) -> str | None:
    """Why a package's (recomputed) proposal must not be decided on for `period`, or None:
    it was measured for another payment period, or (for an approval) provisionally."""
    measured = payment.get("period")
    if not measured:
        return None
    if measured["name"] != period:
        return (
            f"the package was measured for payment period {measured['name']!r} (through "
            f"{measured['through']}), not {period!r}; approve it with --period "
            f"{measured['name']}, or measure {period!r} with `utfall run --period {period}`"
        )
    if measured.get("provisional") and decision == "approved":
        pending = [e["period"]["name"] for e in payment.get("earlier", []) if not e["approved"]]
        return (
            f"the package's proposal for period {period!r} is provisional (earlier period(s) "
            f"{', '.join(pending)} not approved when it was measured); approve those, then "
            f"measure {period!r} again"
        )
    return None


def ledger_problems(
    con: duckdb.DuckDBPyConnection, contract_id: str, payment_period: Mapping[str, Any] | None
) -> list[str]:
    """A package's earlier payments (context.json) against the warehouse ledger: each one it
    counts as approved must be the ledger's approval of that period, amount for amount."""
    if not payment_period:
        return []
    approved = approvals(con, contract_id)
    problems = []
    for i, e in enumerate(payment_period.get("earlier") or []):
        if not e.get("approved"):
            continue
        name = e["period"]["name"]
        d = approved.get(name)
        where = f"context.json $.payment_period.earlier[{i}]"
        if d is None or d.get("reference") != e.get("reference"):
            problems.append(
                f"{where}: counts period {name!r} as paid under approval {e.get('reference')}, "
                f"but the ledger's approval of {name!r} is "
                f"{d.get('reference') if d else 'missing'}"
            )
        elif d.get("payment_lines") != e.get("lines") or d.get("amount") != e.get("total"):
            problems.append(
                f"{where}: the amounts of period {name!r} differ from its approval "
                f"{d.get('reference')} in the ledger"
            )
    return problems
