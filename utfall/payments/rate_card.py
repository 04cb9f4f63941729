"""`rate_card`: a price per outcome event per person, each event claimable once per person,
with minimum durations and caps per person and per contract (UK rate-card funds).

Input: ``events``, a polars DataFrame with one row per outcome event a person achieved:

    person_id     Utf8, not null   the person's pseudonym (never a personnummer)
    event         Utf8, not null   an event the rate card prices (e.g. "entered_work")
    achieved_on   Date, not null   the day the outcome was achieved
    duration_days Int, nullable    how long it was sustained, in days (null: not measured)

Rows are taken in a fixed order: `achieved_on`, then `person_id`, then the event's place in
the rate card, then `duration_days` (longest first, null last), then row order. In that
order each row is

* ``after_period``: achieved after the payment period's last day (counted in a later one);
* ``too_short``: its price needs `min_duration_days` and it lasted less (or is unknown);
  a later row of the same person and event that lasts long enough can still claim it;
* ``already_claimed``: the person's event was claimed by an earlier row (once per person);
* otherwise claimed: price, cut to what the person's cap (`cap_per_person`) and then the
  contract's cap (`contract_cap`) leave; ``paid``, ``capped_person`` or ``capped_contract``
  (a cut to 0 still uses the claim).

So when the contract cap is reached mid-list, the events achieved earliest are paid (ties:
by pseudonym), the event that crosses the cap is paid in part and later ones get 0. Every
row is listed with its status and amount in the line's ``claims``; none is dropped.

    due = sum of claimed amounts  (<= contract_cap; each person's sum <= cap_per_person)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import polars as pl

from utfall.payments.base import MONEY, Due, Inputs, PaymentInputError, Rule, positive

COLUMNS = {"person_id": pl.Utf8, "event": pl.Utf8, "achieved_on": pl.Date}


def _rows(events: Any, prices: dict[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The events as dicts with their 1-based row number, after checking the frame."""
    if not isinstance(events, pl.DataFrame):
        raise PaymentInputError(
            "payment rule rate_card needs an events frame (person_id, event, achieved_on, "
            "duration_days); none was given"
        )
    for name, dtype in {**COLUMNS, "duration_days": None}.items():
        if name not in events.columns:
            raise PaymentInputError(f"rate card events: column {name!r} is missing")
        if dtype is not None and events.schema[name] != dtype:
            raise PaymentInputError(
                f"rate card events: column {name!r} is {events.schema[name]}, expected {dtype}"
            )
    if not events.schema["duration_days"].is_integer():
        raise PaymentInputError(
            f"rate card events: column 'duration_days' is {events.schema['duration_days']}, "
            "expected an integer type"
        )
    if events.height:
        from utfall.identity import identity_like_columns

        year = events["achieved_on"].max()
        found = identity_like_columns(
            events.select("person_id", "event"), year.year if year else dt.date.today().year
        )
        if found:
            where = ", ".join(f"{k!r} ({n} row{'s' * (n != 1)})" for k, n in found.items())
            raise PaymentInputError(
                f"rate card events: {where} hold personal identity numbers; pass the "
                "pseudonyms made at ingest, never identity numbers"
            )
    rows = events.select([*COLUMNS, "duration_days"]).to_dicts()
    for n, row in enumerate(rows, start=1):
        for name in COLUMNS:
            if row[name] is None or row[name] == "":
                raise PaymentInputError(f"rate card events: row {n}: {name} is empty")
        if row["event"] not in prices:
            from utfall.plan import did_you_mean

            raise PaymentInputError(
                f"rate card events: row {n}: event {row['event']!r} has no price"
                f"{did_you_mean(row['event'], prices)} (priced: {', '.join(prices)})"
            )
        if row["duration_days"] is not None and row["duration_days"] < 0:
            raise PaymentInputError(f"rate card events: row {n}: duration_days is negative")
        row["row"] = n
    return rows


def pay(rule: Mapping[str, Any], inputs: Inputs) -> Due:
    prices = {p["event"]: p for p in rule["prices"]}
    place = {name: i for i, name in enumerate(prices)}
    rows = _rows(inputs.events, prices)
    rows.sort(
        key=lambda r: (
            r["achieved_on"],
            r["person_id"],
            place[r["event"]],
            r["duration_days"] is None,
            -(r["duration_days"] or 0),
            r["row"],
        )
    )
    person_cap = Decimal(rule["cap_per_person"]) if "cap_per_person" in rule else None
    contract_cap = Decimal(rule["contract_cap"])
    claimed: set[tuple[str, str]] = set()
    by_person: dict[str, Decimal] = {}
    total = Decimal("0.00")
    claims = []
    counts: dict[str, int] = {}
    priced_total = Decimal("0.00")
    for r in rows:
        price = Decimal(prices[r["event"]]["price"])
        minimum = prices[r["event"]].get("min_duration_days")
        key = (r["person_id"], r["event"])
        amount = Decimal("0.00")
        if inputs.through is not None and r["achieved_on"] > inputs.through:
            status = "after_period"
        elif minimum is not None and (r["duration_days"] is None or r["duration_days"] < minimum):
            status = "too_short"
        elif key in claimed:
            status = "already_claimed"
        else:
            claimed.add(key)
            priced_total += price
            amount, status = price, "paid"
            if person_cap is not None:
                left = person_cap - by_person.get(r["person_id"], Decimal(0))
                if amount > left:
                    amount, status = left, "capped_person"
            if amount > contract_cap - total:
                amount, status = contract_cap - total, "capped_contract"
            by_person[r["person_id"]] = by_person.get(r["person_id"], Decimal(0)) + amount
            total += amount
        counts[status] = counts.get(status, 0) + 1
        claims.append(
            {
                "row": r["row"],
                "person_id": r["person_id"],
                "event": r["event"],
                "achieved_on": r["achieved_on"].isoformat(),
                "duration_days": r["duration_days"],
                "price": str(price),
                "status": status,
                "amount": str(amount),
            }
        )
    claimed_n = sum(counts.get(s, 0) for s in ("paid", "capped_person", "capped_contract"))
    steps = [
        f"{len(rows)} event rows: {claimed_n} claimed, "
        + ", ".join(f"{counts[s]} {s}" for s in sorted(counts) if s not in ("paid",)),
        f"claimed events at their prices sum to {priced_total}",
    ]
    if counts.get("capped_person"):
        steps.append(f"{counts['capped_person']} cut by the cap per person {person_cap}")
    if counts.get("capped_contract"):
        steps.append(f"{counts['capped_contract']} cut by the contract cap {contract_cap}")
    steps.append(f"due {total}")
    steps[0] = steps[0].rstrip(", ")
    return Due(total, total / contract_cap, steps, {"claims": claims})


def check(rule: Mapping[str, Any]) -> list[tuple[str, str]]:
    problems = positive(rule, "contract_cap", "cap_per_person")
    seen: dict[str, int] = {}
    for j, p in enumerate(rule["prices"]):
        problems += [(f"prices[{j}].{k}", t) for k, t in positive(p, "price")]
        if p["event"] in seen:
            problems.append(
                (
                    f"prices[{j}].event",
                    f"{p['event']!r} is priced twice (also prices[{seen[p['event']]}]); "
                    "each event has one price",
                )
            )
        seen.setdefault(p["event"], j)
    return problems


RULE = Rule(
    kind="rate_card",
    description="a price per outcome event per person, each claimable once, with caps",
    parameters={
        "prices": {
            "type": "array",
            "minItems": 1,
            "description": "the rate card: one price per event",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["event", "price"],
                "properties": {
                    "event": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,62}$"},
                    "price": {**MONEY, "description": "paid once per person who achieves it"},
                    "min_duration_days": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "the event counts only if sustained this many days "
                        "(13 weeks = 91)",
                    },
                },
            },
        },
        "cap_per_person": {**MONEY, "description": "the most paid for one person"},
        "contract_cap": {**MONEY, "description": "the most paid under the rule in all"},
    },
    required=("prices", "contract_cap"),
    reads=frozenset({"events"}),
    pay=pay,
    maximum=lambda rule: Decimal(rule["contract_cap"]),
    check=check,
)
