"""Interim and final payment periods: cumulative amounts due minus what was paid before."""

from __future__ import annotations

import pytest
from test_payments_rules import CARD, EVENTS, effect, frame, make_plan

from utfall.payments import PaymentInputError, propose

PERIODS = [
    {"name": "interim_h1", "kind": "interim", "through": "2025-06-30"},
    {"name": "final", "kind": "final", "through": "2025-12-31"},
]
RULES = [
    {"kind": "fixed", "amount": "600000.00"},
    {"kind": "linear_to_target", "amount": "1400000.00", "target_relative_reduction": 0.12},
]


def amounts(p: dict) -> list[str]:
    return [line["amount"] for line in p["lines"]]


@pytest.fixture
def plan(tmp_path):
    return make_plan(tmp_path, RULES, periods=PERIODS)


def test_interim_then_final(plan):
    interim = propose(plan, effect(-0.06), period="interim_h1")
    # fixed: due in full at once; linear: 0.06 / 0.12 x 1 400 000 = 700 000
    assert amounts(interim) == ["600000.00", "700000.00"] and interim["total"] == "1300000.00"
    assert interim["period"] == {
        "name": "interim_h1",
        "index": 0,
        "kind": "interim",
        "through": "2025-06-30",
    }
    final = propose(plan, effect(-0.12), period="final", earlier=[interim])
    # cumulative due 600 000 and 1 400 000, minus 600 000 and 700 000 paid
    assert amounts(final) == ["0.00", "700000.00"] and final["total"] == "700000.00"
    assert [x["cumulative_due"] for x in final["lines"]] == ["600000.00", "1400000.00"]
    assert [x["paid_before"] for x in final["lines"]] == ["600000.00", "700000.00"]
    assert final["cumulative_due"] == "2000000.00" and final["paid_before"] == "1300000.00"
    assert (
        "cumulative due 1400000.00 - paid in earlier periods 700000.00 = 700000.00"
        in (final["lines"][1]["explanation"])
    )


def test_caps_hold_over_the_term(plan):
    interim = propose(plan, effect(-0.15), period="interim_h1")  # above target: capped
    assert amounts(interim) == ["600000.00", "1400000.00"]
    final = propose(plan, effect(-0.20), period="final", earlier=[interim])
    assert amounts(final) == ["0.00", "0.00"]  # 1 400 000 cumulative cap already paid


def test_no_clawback_by_default(plan):
    interim = propose(plan, effect(-0.06), period="interim_h1")
    final = propose(plan, effect(-0.03), period="final", earlier=[interim])
    # cumulative 0.03 / 0.12 x 1 400 000 = 350 000, but 700 000 was paid: pays 0
    assert amounts(final) == ["0.00", "0.00"] and final["total"] == "0.00"
    assert final["lines"][1]["overpaid"] == "350000.00" and final["clawback"] is False


def test_clawback_when_the_plan_allows_it(tmp_path):
    plan = make_plan(tmp_path, RULES, periods=PERIODS, clawback=True)
    interim = propose(plan, effect(-0.06), period="interim_h1")
    final = propose(plan, effect(-0.03), period="final", earlier=[interim])
    assert amounts(final) == ["0.00", "-350000.00"] and final["total"] == "-350000.00"


def test_rate_card_counts_events_up_to_the_period(tmp_path):
    card = {**CARD, "contract_cap": "100000.00"}
    plan = make_plan(tmp_path, [card], periods=PERIODS)
    events = frame([*EVENTS, ("p-d", "entered_work", "2025-09-01", None)])  # row 8
    interim = propose(plan, None, period="interim_h1", events=events)
    statuses = {c["row"]: c["status"] for c in interim["lines"][0]["claims"]}
    assert statuses[8] == "after_period" and amounts(interim) == ["70000.00"]  # as per person
    final = propose(plan, None, period="final", earlier=[interim], events=events)
    assert amounts(final) == ["10000.00"]  # 80 000 cumulative - 70 000 paid: p-d's entry


def test_contract_cap_reached_across_periods(tmp_path):
    plan = make_plan(tmp_path, [CARD], periods=PERIODS)  # contract cap 45 000
    events = frame([*EVENTS, ("p-d", "entered_work", "2025-09-01", None)])
    interim = propose(plan, None, period="interim_h1", events=events)
    final = propose(plan, None, period="final", earlier=[interim], events=events)
    assert amounts(interim) == ["45000.00"] and amounts(final) == ["0.00"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "the plan's payment has periods (interim_h1, final); say which one to propose for"),
        ({"period": "finale"}, "no payment period 'finale'; plan periods: interim_h1, final"),
        (
            {"period": "final"},
            "period 'final' needs the proposals of the periods before it, in order "
            "(interim_h1); got: none",
        ),
    ],
)
def test_period_inputs_are_checked(plan, kwargs, message):
    with pytest.raises(PaymentInputError) as err:
        propose(plan, effect(-0.1), **kwargs)
    assert str(err.value) == message


def test_earlier_proposals_must_match(plan, tmp_path):
    interim = propose(plan, effect(-0.06), period="interim_h1")
    with pytest.raises(PaymentInputError, match=r"got: interim_h1, interim_h1"):
        propose(plan, effect(-0.1), period="final", earlier=[interim, interim])
    other = make_plan(tmp_path, RULES[::-1], periods=PERIODS)
    with pytest.raises(PaymentInputError) as err:
        propose(other, effect(-0.1), period="final", earlier=[interim])
    assert str(err.value) == (
        "the proposal for period 'interim_h1' has other rules or currency than the plan's "
        "payment terms"
    )


def test_no_periods_takes_no_period(tmp_path):
    plan = make_plan(tmp_path, RULES)
    with pytest.raises(PaymentInputError) as err:
        propose(plan, effect(-0.1), period="final")
    assert str(err.value) == (
        "the plan's payment has no periods; propose without a period or earlier payments"
    )
