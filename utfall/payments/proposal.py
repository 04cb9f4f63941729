"""The proposed payment: every rule's line and the totals, in exact decimal money.

Each rule (one module per kind, see `utfall.payments.base`) gives the cumulative amount due
to date, unrounded; it is rounded once to öre (ROUND_HALF_EVEN) here. Without payment
periods that is the line's amount.

**Payment periods.** A plan may list `payment.periods` (interim ones, then one final; each
with the last day it covers, `through`). A proposal is made for one period, given the
proposals of the periods before it (what they paid). Per rule:

    cumulative due = the rule's amount on everything measured up to `through`
                     (caps apply to the cumulative amount, so they hold over the term)
    paid before    = the sum of the rule's amounts in the earlier periods' proposals
    amount         = cumulative due - paid before, and never below 0 unless the plan says
                     `clawback: true` (then a negative amount is paid back)

Without claw-back an interim period that paid more than is finally due keeps the excess;
the line says so (``overpaid``). The effect estimate, counts and events passed in are those
measured up to the period's `through` (the rate card also drops events achieved later).

Beside the proposal, `range` gives the payment as if the improvement were the least
favourable bound, the point estimate and the most favourable bound (what the interval
allows), so a validator sees how much of the amount rests on noise. The payment is
*proposed*: it becomes due only when the independent validator approves it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import TYPE_CHECKING, Any

from utfall.payments.base import (
    CENT,
    Inputs,
    PaymentInputError,
    Rule,
    cents,
    registry,
    show,
)
from utfall.payments.basis import POINTS, absolute_at, decide, improvement_at

if TYPE_CHECKING:
    from utfall.plan import Plan


def on_effect(rule: Mapping[str, Any]) -> bool:
    """Whether a rule (as written in the plan) pays on the effect estimate."""
    reads = registry()[rule["kind"]].reads
    if "effect" in reads:
        return True
    return "effect_absolute" in reads and rule.get("savings", "per_person_effect") != "total"


def variable_maximum(terms: Mapping[str, Any]) -> Decimal:
    """The amount at risk: the most the rules that depend on the outcome can pay."""
    chosen = [registry()[r["kind"]] for r in terms["rules"]]
    return sum(
        (
            cents(rule.maximum(r))
            for rule, r in zip(chosen, terms["rules"], strict=True)
            if rule.variable
        ),
        Decimal(0),
    ).quantize(CENT)


def _paid_before(
    terms: Mapping[str, Any], period: str | None, earlier: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, Any] | None, list[Decimal]]:
    """The period proposed for (None without periods) and each rule's earlier payments."""
    periods = terms.get("periods")
    n = len(terms["rules"])
    if not periods:
        if period is not None or earlier:
            raise PaymentInputError(
                "the plan's payment has no periods; propose without a period or earlier payments"
            )
        return None, [Decimal("0.00")] * n
    names = [p["name"] for p in periods]
    if period is None:
        raise PaymentInputError(
            f"the plan's payment has periods ({', '.join(names)}); say which one to propose for"
        )
    if period not in names:
        raise PaymentInputError(f"no payment period {period!r}; plan periods: {', '.join(names)}")
    index = names.index(period)
    given = [(e.get("period") or {}).get("name") for e in earlier]
    if given != names[:index]:
        raise PaymentInputError(
            f"period {period!r} needs the proposals of the periods before it, in order "
            f"({', '.join(names[:index]) or 'none'}); got: {', '.join(map(str, given)) or 'none'}"
        )
    paid = [Decimal("0.00")] * n
    for e in earlier:
        kinds = [line["kind"] for line in e["lines"]]
        if kinds != [r["kind"] for r in terms["rules"]] or e.get("currency") != terms["currency"]:
            raise PaymentInputError(
                f"the proposal for period {e['period']['name']!r} has other rules or currency "
                "than the plan's payment terms"
            )
        for i, line in enumerate(e["lines"]):
            paid[i] += Decimal(line["amount"])
    info = {"name": period, "index": index, **periods[index]}
    return info, paid


def _line(
    i: int,
    given: Mapping[str, Any],
    rule: Rule,
    inputs: Inputs,
    paid: Decimal,
    period: dict[str, Any] | None,
    clawback: bool,
) -> dict[str, Any]:
    due = rule.pay(given, inputs)
    cumulative = cents(due.amount)
    steps = list(due.steps)
    line: dict[str, Any] = {
        "rule": i,
        "kind": given["kind"],
        "description": given.get("description", ""),
        "max_amount": str(cents(rule.maximum(given))),
        "achievement": show(due.achievement),
    }
    amount = cumulative
    if period is not None:
        amount = cumulative - paid
        steps.append(f"cumulative due {cumulative} - paid in earlier periods {paid} = {amount}")
        if amount < 0 and not clawback:
            steps.append(
                f"the plan does not claw back: this period pays 0 and {-amount} stays overpaid"
            )
            line["overpaid"] = str(-amount)
            amount = Decimal(0).quantize(CENT)
        line["cumulative_due"] = str(cumulative)
        line["paid_before"] = str(paid)
    line["amount"] = str(amount)
    line["explanation"] = "; ".join(steps)
    if due.detail:
        line.update(due.detail)
    return line


def _lines(
    terms: Mapping[str, Any],
    inputs: Inputs,
    paid: list[Decimal],
    period: dict[str, Any] | None,
    reuse: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Each rule's line; with `reuse` (the proposal's own lines), a rule that does not pay
    on the effect keeps its line, since it pays the same at every point of the interval (a
    rate card over many events is then computed once, not four times)."""
    clawback = bool(terms.get("clawback", False))
    return [
        reuse[i]
        if reuse is not None and not on_effect(given)
        else _line(i, given, registry()[given["kind"]], inputs, paid[i], period, clawback)
        for i, given in enumerate(terms["rules"])
    ]


def _total(lines: list[dict[str, Any]], key: str = "amount", only_variable: bool = False) -> str:
    chosen = [x for x in lines if not only_variable or registry()[x["kind"]].variable]
    return str(sum((Decimal(x[key]) for x in chosen), Decimal(0)).quantize(CENT))


def propose(
    plan: Plan,
    effect: Mapping[str, Any] | None,
    terms: Mapping[str, Any] | None = None,
    *,
    period: str | None = None,
    earlier: Sequence[Mapping[str, Any]] = (),
    counts: Mapping[str, int] | None = None,
    savings_total: Decimal | str | None = None,
    events: Any = None,
) -> dict[str, Any]:
    """Each rule's amount and the total; money as strings of exact decimals.

    `effect` is the payment outcome's stored effect (EffectResult.to_dict()), or None when
    no rule pays on it. `terms` replaces the plan's payment terms (to compare bases on one
    stored effect, as the simulation and design tools do). With payment periods, `period`
    names the one proposed for and `earlier` holds the proposals of the periods before it.
    `counts` (e.g. persons_treated), `savings_total` and `events` (a polars frame, see
    `utfall.payments.rate_card`) feed the rules that read them.
    """
    # A fixed context: a caller's decimal settings must not change a payment.
    with localcontext(Context(prec=28, rounding=ROUND_HALF_EVEN)):
        return _propose(plan, effect, terms, period, earlier, counts, savings_total, events)


def _propose(
    plan: Plan,
    effect: Mapping[str, Any] | None,
    terms: Mapping[str, Any] | None,
    period: str | None,
    earlier: Sequence[Mapping[str, Any]],
    counts: Mapping[str, int] | None,
    savings_total: Any,
    events: Any,
) -> dict[str, Any]:
    terms = plan.payment if terms is None else terms
    period_info, paid = _paid_before(terms, period, earlier)
    through = dt.date.fromisoformat(period_info["through"]) if period_info else None
    common = {
        "counts": dict(counts or {}),
        "savings_total": None if savings_total is None else _savings_total(savings_total),
        "events": events,
        "through": through,
    }
    needs_effect = any(on_effect(r) for r in terms["rules"])
    if effect is None and needs_effect:
        kinds = sorted({r["kind"] for r in terms["rules"] if on_effect(r)})
        raise PaymentInputError(
            f"the payment rules {', '.join(kinds)} pay on the effect estimate; none was given"
        )
    if effect is not None:
        at = {p: improvement_at(plan, effect, p) for p in POINTS}
        absolute: dict[str, Decimal | None] = dict.fromkeys(POINTS)
        if any(
            on_effect(r) and "effect_absolute" in registry()[r["kind"]].reads
            for r in terms["rules"]
        ):
            absolute = {p: absolute_at(plan, effect, p) for p in POINTS}
        point, cap, decision = decide(terms, at)

        def inputs_at(p: str, evidence: Decimal | None) -> Inputs:
            return Inputs(
                improvement=at[p],
                least_favourable=at["least_favourable"],
                evidence_share=evidence,
                absolute=absolute[p],
                **common,
            )

        lines = _lines(terms, inputs_at(point, cap), paid, period_info)
        payment_range = []
        for p in POINTS:
            at_lines = _lines(terms, inputs_at(p, None), paid, period_info, reuse=lines)
            payment_range.append(
                {
                    "at": p,
                    "improvement": str(at[p]),
                    "variable": _total(at_lines, only_variable=True),
                    "total": _total(at_lines),
                }
            )
        measured: str | None = str(at[point])
    else:
        lines = _lines(terms, Inputs(**common), paid, period_info)
        payment_range, measured = [], None
        decision = {}
    if not needs_effect:
        decision = _no_effect_decision(terms, lines)
    out: dict[str, Any] = {
        "currency": terms["currency"],
        "outcome": effect["outcome"] if effect is not None else terms["outcome"],
        "basis": terms["basis"],
        "decision": decision,
        "confidence": effect.get("confidence") if effect is not None else None,
        "measured_improvement": measured,
        "lines": lines,
        "total": _total(lines),
        "variable": _total(lines, only_variable=True),
        "maximum": _total(lines, "max_amount"),
        "variable_maximum": _total(lines, "max_amount", only_variable=True),
        "range": payment_range,
        "status": "proposed",
    }
    if period_info is not None:
        out["period"] = period_info
        out["clawback"] = bool(terms.get("clawback", False))
        out["cumulative_due"] = _total(lines, "cumulative_due")
        out["paid_before"] = _total(lines, "paid_before")
    return out


def _savings_total(value: Any) -> Decimal:
    """A measured savings total as an exact, finite Decimal (a string, int or Decimal)."""
    try:
        if isinstance(value, float | bool):
            raise TypeError
        total = Decimal(value)
    except (TypeError, ValueError, ArithmeticError):
        raise PaymentInputError(
            f"savings_total must be an exact decimal (a string such as '1250000.00', an int "
            f"or a Decimal), not {type(value).__name__} {value!r}"
        ) from None
    if not total.is_finite():
        raise PaymentInputError(f"savings_total must be a finite amount, not {value!r}")
    return total


def _no_effect_decision(terms: Mapping[str, Any], lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The decision when no rule pays on the effect estimate (the basis decides nothing)."""
    if all(r["kind"] == "none" for r in terms["rules"]):
        return {
            "pays_on": "nothing",
            "reason": "no payment follows: " + "; ".join(r["reason"] for r in terms["rules"]),
        }
    return {
        "pays_on": "the rules' own inputs",
        "reason": "no rule pays on the effect estimate; each line says what it pays on",
    }
