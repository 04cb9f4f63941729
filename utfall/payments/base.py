"""The payment rule interface, its registry, exact money, and the checks of a plan's rules.

Every rule kind is one module in `utfall.payments` that defines a module-level
``RULE = Rule(...)``; :func:`registry` finds it (modules sorted by name), so adding a kind is
one module and its tests. The plan schema's rule kinds and each kind's keys come from the
registry (:func:`rules_item_schema`), and so do the checks of meaning (:func:`rule_problems`).

A rule is a pure function ``pay(rule, inputs) -> Due``: from the rule's terms as written in
the plan and the measured inputs (:class:`Inputs`: the improvement read under the plan's
basis, the share the evidence allows, counts, a savings total, outcome events, the end of
the payment period) to the **cumulative** amount due to date, unrounded, with the steps that
explain it. The caller (`utfall.payments.proposal`) rounds that amount once to öre
(ROUND_HALF_EVEN) and subtracts what earlier payment periods already paid.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cache
from typing import Any

from utfall.errors import UserError
from utfall.registry import discover

CENT = Decimal("0.01")
SHARE = Decimal("0.0001")
#: Money must fit the warehouse's DECIMAL(18,2): below 10^16 in absolute value.
MAX_AMOUNT_EXCLUSIVE = Decimal(10) ** 16
MONEY = {"$ref": "#/$defs/money"}

#: What a rule may read besides its own terms (Rule.reads).
INPUTS = {
    "effect": "the payment outcome's effect estimate (relative improvement, read under the basis)",
    "effect_absolute": "the effect in outcome units per person (e.g. SEK of public cost)",
    "counts": "counts of the cohort, e.g. persons_treated",
    "savings_total": "a measured savings total in the contract's currency",
    "events": "outcome events per person (see utfall.payments.rate_card)",
}


class PaymentInputError(UserError, ValueError):
    """The inputs of a proposal cannot be used: a missing effect, count or events frame, a
    malformed event row, a period not in the plan, earlier payments that do not match."""


def decimal(x: float | int | str | Decimal) -> Decimal:
    """The Decimal of a number as written (0.12 -> Decimal('0.12'), not its binary value)."""
    if isinstance(x, Decimal):
        return x
    if isinstance(x, bool):
        raise TypeError("a bool is not a number")
    if isinstance(x, int | str):
        return Decimal(x)
    return Decimal(repr(float(x)))


def cents(x: Decimal) -> Decimal:
    """Round money once, to öre, half to even (never "-0.00": adding 0 drops a zero's sign)."""
    return x.quantize(CENT, rounding=ROUND_HALF_EVEN) + 0


def money(x: Decimal) -> str:
    """An amount in an explanation step: to the öre when it is whole öre, else to six
    decimals (the amount is computed from the unrounded value and rounded once at the end)."""
    whole = x.quantize(CENT) + 0
    if whole == x:
        return str(whole)
    return str(x.quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN) + 0)


def show(share: Decimal) -> str:
    """A share for display (six decimals); amounts are computed from the unrounded value."""
    return str(share.quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN))


def fmt(x: Decimal) -> str:
    """A threshold for display, with as many decimals as an improvement (at least)."""
    return str(x.quantize(SHARE) if x == x.quantize(SHARE) else x)


@dataclass(frozen=True)
class Inputs:
    """What a rule may pay on. ``improvement`` is the relative improvement in the desired
    direction (0.12 = 12 % better than the counterfactual) at the point the basis reads;
    ``least_favourable`` the same at the confidence bound least favourable to the provider;
    ``evidence_share`` the largest share of its variable amount the threshold basis allows
    (None: no limit); ``absolute`` the effect in outcome units per person at the basis's
    point, in the desired direction; ``through`` the last day the period covers (None: the
    whole term)."""

    improvement: Decimal | None = None
    least_favourable: Decimal | None = None
    evidence_share: Decimal | None = None
    absolute: Decimal | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    savings_total: Decimal | None = None
    events: Any = None  # a polars DataFrame, see utfall.payments.rate_card
    through: dt.date | None = None


@dataclass(frozen=True)
class Due:
    """A rule's cumulative amount due to date (unrounded), the share of its maximum that is,
    the steps that explain it, and optional detail (e.g. the rate card's claims)."""

    amount: Decimal
    achievement: Decimal
    steps: list[str]
    detail: dict[str, Any] | None = None


@dataclass(frozen=True)
class Rule:
    """A registered payment rule kind.

    ``parameters`` are JSON-schema fragments for the rule's keys (besides ``kind`` and
    ``description``); ``required`` names those a plan must give. ``maximum(rule)`` is the
    most the rule can pay over the term (it fills ``max_amount`` and bounds DECIMAL(18,2));
    ``minimum(rule)`` the least (below 0 only where the plan allows paying back).
    ``check(rule)`` returns problems beyond the schema as (key, sentence) pairs, the key
    relative to the rule. ``reads`` names the inputs it pays on (INPUTS); a rule that reads
    nothing pays the same whatever the outcome (it is not part of the variable amount).
    ``needs(rule)`` names the inputs besides the effect that this configured rule cannot pay
    without (default: its ``reads`` other than the effect), so a run can refuse a plan whose
    inputs it does not measure before it starts.
    """

    kind: str
    description: str
    parameters: Mapping[str, Mapping[str, Any]]
    pay: Callable[[Mapping[str, Any], Inputs], Due]
    maximum: Callable[[Mapping[str, Any]], Decimal]
    required: tuple[str, ...] = ()
    reads: frozenset[str] = frozenset()
    minimum: Callable[[Mapping[str, Any]], Decimal] = lambda _rule: Decimal(0)
    check: Callable[[Mapping[str, Any]], list[tuple[str, str]]] | None = None
    needs: Callable[[Mapping[str, Any]], frozenset[str]] | None = None

    def inputs_needed(self, rule: Mapping[str, Any]) -> frozenset[str]:
        """The inputs besides the effect that `rule` (this kind, configured) pays on."""
        if self.needs is not None:
            return self.needs(rule)
        return frozenset(self.reads - {"effect", "effect_absolute"})

    def __post_init__(self) -> None:
        unknown = set(self.reads) - set(INPUTS)
        if unknown:
            raise ValueError(f"payment rule {self.kind}: unknown inputs {sorted(unknown)}")
        missing = set(self.required) - set(self.parameters)
        if missing:
            raise ValueError(f"payment rule {self.kind}: required {sorted(missing)} undeclared")

    @property
    def variable(self) -> bool:
        """Whether what it pays depends on the outcome."""
        return bool(self.reads)


@cache
def registry() -> dict[str, Rule]:
    """Every rule module's ``RULE``, by kind (modules found, sorted, once)."""
    import utfall.payments as package

    return discover(package, "RULE", Rule, lambda rule: rule.kind)


def get(kind: str) -> Rule:
    try:
        return registry()[kind]
    except KeyError:
        raise PaymentInputError(
            f"no payment rule kind {kind!r}; known: {', '.join(registry())}"
        ) from None


def rules_item_schema() -> dict[str, Any]:
    """The JSON Schema of one entry of ``payment.rules``, from the registry.

    Every key any kind takes is a known key (so a typo gets a did-you-mean); each kind's own
    keys are typed under an if/then on ``kind``. Which keys a kind requires, and keys of
    another kind, are checked for meaning (:func:`rule_problems`), so one typo gives one
    message.
    """
    keys: dict[str, Any] = {
        "kind": {
            "enum": list(registry()),
            "description": "the rule kind; one module each in utfall/payments",
        },
        "description": {"type": "string", "description": "what the line is, for the report"},
    }
    branches = []
    for kind, rule in registry().items():
        for name in rule.parameters:
            keys.setdefault(name, {})
        branches.append(
            {
                "if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
                "then": {"description": rule.description, "properties": dict(rule.parameters)},
            }
        )
    return {
        "type": "object",
        "required": ["kind"],
        "properties": keys,
        "additionalProperties": False,
        "allOf": branches,
    }


def rule_problems(rules: list[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Meaning problems of ``payment.rules`` (after the schema passed): keys of another
    kind, missing required keys, each kind's own check, a `none` rule beside others, and
    the maxima summing beyond DECIMAL(18,2)."""
    problems: list[tuple[str, str]] = []
    total = Decimal(0)
    sound = True
    for i, given in enumerate(rules):
        at = f"payment.rules[{i}]"
        rule = registry()[given["kind"]]
        before = len(problems)
        for key in given:
            if key in ("kind", "description") or key in rule.parameters:
                continue
            owners = [k for k, r in registry().items() if key in r.parameters]
            problems.append(
                (
                    f"{at}.{key}",
                    f"a {rule.kind} rule takes no {key}; only {', '.join(owners)} "
                    f"{'takes' if len(owners) == 1 else 'take'} one",
                )
            )
        for key in rule.required:
            if key not in given:
                problems.append((f"{at}.{key}", "required key is missing"))
        if len(problems) == before and rule.check is not None:
            problems += [(f"{at}.{key}" if key else at, text) for key, text in rule.check(given)]
        if len(problems) == before:
            total += max(rule.maximum(given), -rule.minimum(given))
        else:
            sound = False
    kinds = [r["kind"] for r in rules]
    if "none" in kinds and len(kinds) > 1:
        problems.append(
            (
                "payment.rules",
                "a none rule means a follow-up report only, so it cannot stand beside rules "
                "that pay; remove it or the others",
            )
        )
    if sound and total >= MAX_AMOUNT_EXCLUSIVE:
        problems.append(
            (
                "payment.rules",
                f"the amounts sum to {cents(total)}, too large for DECIMAL(18,2) "
                "(must be below 10^16)",
            )
        )
    return problems


def positive(rule: Mapping[str, Any], *keys: str) -> list[tuple[str, str]]:
    """'must be greater than 0' for each money key given as 0."""
    return [(k, "must be greater than 0") for k in keys if k in rule and Decimal(rule[k]) <= 0]


def clamp(x: Decimal, low: Decimal, high: Decimal) -> Decimal:
    return min(high, max(low, x))


def require_improvement(inputs: Inputs, kind: str) -> Decimal:
    """The improvement a rule pays on; an error naming the rule when no effect was given."""
    if inputs.improvement is None:
        raise PaymentInputError(f"payment rule {kind} pays on the effect; no effect was given")
    return inputs.improvement
