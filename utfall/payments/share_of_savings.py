"""`share_of_savings`: a share (e.g. 50 %) of the measured public savings, up to a cap.

With `savings: per_person_effect` (the default) the payment outcome is a public cost per
person in the contract's currency, and

    savings = saving per person x persons treated

where the saving per person is the effect in the desired direction (a cost that should
decrease: the counterfactual cost minus the observed one) at the point the plan's basis
reads, as a Decimal rounded to 0.0001, and persons treated is the count
`counts["persons_treated"]` the caller gives. With `savings: total` the caller gives the
measured savings total (`savings_total`, an exact Decimal) instead. Then

    due = share x savings, at most `cap`;
    a negative due (costs rose) pays 0, unless `allow_negative: true`: then the provider
    pays back, at most `cap`.

Under the threshold basis (per_person_effect only) the due is further capped at the share
the evidence allows times `cap`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from utfall.payments.base import (
    MONEY,
    Due,
    Inputs,
    PaymentInputError,
    Rule,
    decimal,
    money,
    positive,
    show,
)


def _savings(rule: Mapping[str, Any], inputs: Inputs) -> tuple[Decimal, str]:
    if rule.get("savings", "per_person_effect") == "total":
        if inputs.savings_total is None:
            raise PaymentInputError(
                "payment rule share_of_savings (savings: total) needs the measured savings "
                "total (savings_total); none was given"
            )
        return inputs.savings_total, f"measured savings total {inputs.savings_total}"
    persons = inputs.counts.get("persons_treated")
    if persons is None or isinstance(persons, bool) or not isinstance(persons, int) or persons < 0:
        raise PaymentInputError(
            "payment rule share_of_savings (savings: per_person_effect) needs "
            f"counts['persons_treated'] as a whole number >= 0; got {persons!r}"
        )
    per_person = inputs.absolute
    if per_person is None:
        raise PaymentInputError(
            "payment rule share_of_savings (savings: per_person_effect) pays on the effect; "
            "no effect was given"
        )
    savings = per_person * persons
    return savings, (
        f"saving per person {per_person} (the effect on the cost per person, in the desired "
        f"direction) x {persons} persons treated = savings {money(savings)}"
    )


def pay(rule: Mapping[str, Any], inputs: Inputs) -> Due:
    share = decimal(rule["share"])
    cap = Decimal(rule["cap"])
    savings, step = _savings(rule, inputs)
    due = share * savings
    steps = [step, f"x share {share} = {money(due)}"]
    if due < 0 and not rule.get("allow_negative", False):
        steps.append("savings are negative and the plan pays nothing back: 0")
        due = Decimal(0)
    if due > cap:
        steps.append(f"capped at {cap}")
        due = cap
    elif due < -cap:
        steps.append(f"the provider pays back at most the cap: -{cap}")
        due = -cap
    evidence = inputs.evidence_share
    if evidence is not None and rule.get("savings", "per_person_effect") != "total":
        if due > evidence * cap:
            steps.append(
                f"capped at the share the evidence allows, {show(evidence)} x {cap} = "
                f"{money(evidence * cap)}"
            )
            due = evidence * cap
    return Due(due, due / cap, steps)


RULE = Rule(
    kind="share_of_savings",
    description="a share of the measured public savings, up to a cap",
    parameters={
        "share": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
            "description": "the share of the savings paid (0.5 = 50 %)",
        },
        "cap": {**MONEY, "description": "the most the rule pays (and pays back) over the term"},
        "savings": {
            "enum": ["per_person_effect", "total"],
            "description": "per_person_effect (default): the effect on a cost per person x "
            "persons treated; total: a measured savings total the caller gives",
        },
        "allow_negative": {
            "type": "boolean",
            "description": "when savings are negative the provider pays back (default false)",
        },
    },
    required=("share", "cap"),
    reads=frozenset({"effect_absolute", "counts", "savings_total"}),
    pay=pay,
    maximum=lambda rule: Decimal(rule["cap"]),
    minimum=lambda rule: -Decimal(rule["cap"]) if rule.get("allow_negative") else Decimal(0),
    check=lambda rule: positive(rule, "cap"),
    needs=lambda rule: frozenset(
        {"savings_total"} if rule.get("savings", "per_person_effect") == "total" else {"counts"}
    ),
)
