"""The plan's payment terms: rule kinds and keys from the registry, hostile inputs named."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path

import pytest
import yaml

import utfall.payments
from utfall.cli import EXAMPLE_PLAN
from utfall.payments import base as payment_base
from utfall.plan import PlanError, load_plan, plan_schema

BASE = yaml.safe_load(Path(EXAMPLE_PLAN).read_text(encoding="utf-8"))
KINDS = (
    "fixed, guaranteed_conditional, linear_to_target, none, rate_card, share_of_savings, "
    "threshold_tiers"
)


def problems(tmp_path: Path, rules=None, basis="point_estimate", **payment):
    data = copy.deepcopy(BASE)
    data["payment"] = {"currency": "SEK", "outcome": "short_term_sick_days", "basis": basis}
    data["payment"]["rules"] = rules if rules is not None else BASE["payment"]["rules"]
    data["payment"].update(payment)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    try:
        load_plan(path)
    except PlanError as err:
        return err.problems
    return []


BOND = {
    "kind": "guaranteed_conditional",
    "capital": "10000000.00",
    "guaranteed_share": 0.4,
    "conditional_share": 0.6,
    "target_relative_reduction": 0.12,
    "return_cap": 0.10,
    "return_floor": -0.20,
}
CARD = {
    "kind": "rate_card",
    "prices": [{"event": "entered_work", "price": "10000.00"}],
    "contract_cap": "45000.00",
}


def test_schema_kinds_come_from_the_registry():
    items = plan_schema()["properties"]["payment"]["properties"]["rules"]["items"]
    assert ", ".join(items["properties"]["kind"]["enum"]) == KINDS
    assert ", ".join(utfall.payments.registry()) == KINDS
    by_kind = {b["if"]["properties"]["kind"]["const"]: b["then"] for b in items["allOf"]}
    assert set(by_kind["rate_card"]["properties"]) == {"prices", "cap_per_person", "contract_cap"}


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (
            [{"kind": "rate_crad", "contract_cap": "1.00"}],
            (
                "payment.rules[0].kind",
                f"unknown value 'rate_crad'; did you mean 'rate_card'? (expected one of: {KINDS})",
            ),
        ),
        (
            [{"kind": "rate_card", "contract_cap": "1.00"}],
            ("payment.rules[0].prices", "required key is missing"),
        ),
        (
            [{"kind": "share_of_savings", "share": 1.5, "cap": "100.00"}],
            ("payment.rules[0].share", "must be at most 1, got 1.5"),
        ),
        (
            [{"kind": "share_of_savings", "share": 0, "cap": "100.00"}],
            ("payment.rules[0].share", "must be greater than 0, got 0"),
        ),
        (
            [{"kind": "share_of_savings", "share": 0.5, "cap": "100.00", "capp": "5.00"}],
            ("payment.rules[0]", "unknown key 'capp'; did you mean 'cap'?"),
        ),
        (
            [{"kind": "share_of_savings", "share": 0.5, "cap": "0.00"}],
            ("payment.rules[0].cap", "must be greater than 0"),
        ),
        (
            [{**BOND, "return_cap": -0.3}],
            (
                "payment.rules[0].return_cap",
                "-0.3 is below return_floor -0.2; the cap on the return must be at least its floor",
            ),
        ),
        (
            [{**BOND, "return_cap": -1, "return_floor": -1}],  # nothing could ever be repaid
            ("payment.rules[0].return_cap", "must be greater than -1, got -1"),
        ),
        (
            [{**BOND, "conditional_share": 0.5}],
            (
                "payment.rules[0].conditional_share",
                "guaranteed_share 0.4 + conditional_share 0.5 = 0.9; the two parts split the "
                "capital's repayment, so they must sum to 1",
            ),
        ),
        (
            [{k: v for k, v in BOND.items() if k != "return_floor"} | {"return_cap": -0.7}],
            (
                "payment.rules[0].return_cap",
                "-0.7 is below the return the guaranteed part already gives (-0.6); the cap "
                "must be at least guaranteed_share - 1",
            ),
        ),
        (
            [{"kind": "none"}],
            ("payment.rules[0].reason", "required key is missing"),
        ),
        (
            [{"kind": "none", "reason": "IOP"}, {"kind": "fixed", "amount": "1.00"}],
            (
                "payment.rules",
                "a none rule means a follow-up report only, so it cannot stand beside rules "
                "that pay; remove it or the others",
            ),
        ),
        (
            [{**CARD, "prices": [*CARD["prices"], {"event": "entered_work", "price": "1.00"}]}],
            (
                "payment.rules[0].prices[1].event",
                "'entered_work' is priced twice (also prices[0]); each event has one price",
            ),
        ),
        (
            [{**CARD, "prices": [{"event": "entered_work", "price": "0.00"}]}],
            ("payment.rules[0].prices[0].price", "must be greater than 0"),
        ),
        (
            [
                {
                    **CARD,
                    "prices": [{"event": "entered_work", "price": "1.00", "min_duration_days": 0}],
                }
            ],
            ("payment.rules[0].prices[0].min_duration_days", "must be at least 1, got 0"),
        ),
        (
            [{"kind": "fixed", "amount": "1.00", "share": 0.5}],
            (
                "payment.rules[0].share",
                "a fixed rule takes no share; only share_of_savings takes one",
            ),
        ),
        (
            [
                {
                    "kind": "threshold_tiers",
                    "amount": "1.00",
                    "tiers": [
                        {"min_relative_reduction": 0.05, "share": 0.5},
                        {"min_relative_reduction": 0.04, "share": 0.6},
                    ],
                }
            ],
            (
                "payment.rules[0].tiers[1].min_relative_reduction",
                "0.04 is not above the previous tier's 0.05; list tiers in ascending order",
            ),
        ),
        (
            [{**BOND, "capital": "9200000000000000.00"}],  # x 1.1 = 1.012e16
            (
                "payment.rules",
                "the amounts sum to 10120000000000000.00, too large for DECIMAL(18,2) (must be "
                "below 10^16)",
            ),
        ),
    ],
)
def test_hostile_rules(tmp_path, rules, expected):
    assert problems(tmp_path, rules) == [expected]


def test_the_sum_bound_counts_each_rules_maximum(tmp_path):
    rules = [
        {**BOND, "capital": "5000000000000000.00"},
        {"kind": "fixed", "amount": "4500000000000000.00"},
    ]
    assert problems(tmp_path, rules) == [
        (
            "payment.rules",
            "the amounts sum to 10000000000000000.00, too large for DECIMAL(18,2) (must be "
            "below 10^16)",
        )
    ]  # 5e15 x 1.1 + 4.5e15 = 1e16


def test_every_new_kind_loads(tmp_path):
    tiers = [{"min_relative_reduction": 0.05, "share": 0.5}]
    for rules in (
        [BOND],
        [CARD],
        [{"kind": "share_of_savings", "share": 0.5, "cap": "1.00", "savings": "total"}],
        [{"kind": "threshold_tiers", "amount": "1.00", "tiers": tiers, "bound_must_clear": True}],
        [{"kind": "none", "reason": "IOP partnership"}],
    ):
        assert problems(tmp_path, rules) == [], rules


def test_threshold_basis_needs_a_rule_on_the_effect(tmp_path):
    savings_total = {"kind": "share_of_savings", "share": 0.5, "cap": "1.00", "savings": "total"}
    assert problems(tmp_path, [savings_total], basis="threshold") == [
        (
            "payment.basis",
            "basis threshold needs a rule that pays on the effect (guaranteed_conditional, "
            "linear_to_target, share_of_savings, threshold_tiers): it decides what those pay",
        )
    ]
    assert problems(tmp_path, [BOND], basis="threshold") == []


PERIODS = [
    {"name": "interim_h1", "kind": "interim", "through": "2025-06-30"},
    {"name": "final", "kind": "final", "through": "2025-12-31"},
]


def test_periods_load(tmp_path):
    assert problems(tmp_path, periods=PERIODS, clawback=True) == []


@pytest.mark.parametrize(
    ("periods", "expected"),
    [
        (
            [PERIODS[1], {**PERIODS[0], "through": "2025-12-31"}],
            [
                (
                    "payment.periods[0].kind",
                    "only the last period can be final; the others are interim",
                ),
                (
                    "payment.periods[1].through",
                    "2025-12-31 is not after the previous period's 2025-12-31",
                ),
                ("payment.periods[1].kind", "the last period must be the final one"),
            ],
        ),
        (
            [{**PERIODS[0], "through": "2024-12-31"}, PERIODS[1]],
            [
                (
                    "payment.periods[0].through",
                    "2024-12-31 is outside the measurement period 2025-01-01..2025-12-31",
                )
            ],
        ),
        (
            [PERIODS[0], {**PERIODS[1], "through": "2025-09-30"}],
            [
                (
                    "payment.periods[1].through",
                    "the final period must end with the measurement period, on 2025-12-31",
                )
            ],
        ),
        (
            [PERIODS[0], {**PERIODS[1], "name": "interim_h1"}],
            [("payment.periods[1].name", "duplicate period name 'interim_h1' (also periods[0])")],
        ),
        (
            [{**PERIODS[1], "kind": "last"}],
            [
                (
                    "payment.periods[0].kind",
                    "unknown value 'last' (expected one of: interim, final)",
                )
            ],
        ),
    ],
)
def test_hostile_periods(tmp_path, periods, expected):
    assert problems(tmp_path, periods=periods) == expected


def test_clawback_needs_periods(tmp_path):
    assert problems(tmp_path, clawback=True) == [
        ("payment.clawback", "clawback needs payment periods; list them or remove it")
    ]


def test_a_rule_module_is_all_it_takes(tmp_path, monkeypatch):
    """A new module defining RULE joins the registry and the schema, with no list to edit."""
    (tmp_path / "flat_bonus.py").write_text(
        textwrap.dedent(
            '''
            """A test rule: a flat bonus."""
            from decimal import Decimal
            from utfall.payments.base import MONEY, Due, Rule

            RULE = Rule(
                kind="flat_bonus",
                description="test",
                parameters={"amount": MONEY},
                required=("amount",),
                pay=lambda rule, _inputs: Due(Decimal(rule["amount"]), Decimal(1), ["bonus"]),
                maximum=lambda rule: Decimal(rule["amount"]),
            )
            '''
        ),
        encoding="utf-8",
    )
    monkeypatch.setattr(utfall.payments, "__path__", [*utfall.payments.__path__, str(tmp_path)])
    payment_base.registry.cache_clear()
    try:
        assert "flat_bonus" in payment_base.registry()
        schema = payment_base.rules_item_schema()
        assert "flat_bonus" in schema["properties"]["kind"]["enum"]
        assert payment_base.rule_problems([{"kind": "flat_bonus"}]) == [
            ("payment.rules[0].amount", "required key is missing")
        ]
    finally:
        monkeypatch.undo()
        payment_base.registry.cache_clear()
    assert "flat_bonus" not in payment_base.registry()
