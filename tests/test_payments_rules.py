"""Each payment rule against amounts computed by hand (the arithmetic is in the comments).

Every plan here goes through `load_plan`, so the terms tested are terms a plan can state.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path

import polars as pl
import pytest
import yaml

from utfall.cli import EXAMPLE_PLAN
from utfall.errors import UserError
from utfall.payments import PaymentInputError, propose
from utfall.plan import load_plan

BASE = yaml.safe_load(Path(EXAMPLE_PLAN).read_text(encoding="utf-8"))


def make_plan(tmp_path: Path, rules: list[dict], basis: str = "point_estimate", **payment):
    """The example plan with these rules and basis (and any other payment keys), loaded."""
    data = copy.deepcopy(BASE)
    data["payment"] = {
        "currency": "SEK",
        "outcome": "short_term_sick_days",
        "basis": basis,
        "rules": rules,
        **payment,
    }
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_plan(path)


def effect(rel: float, low: float | None = None, high: float | None = None, **absolute) -> dict:
    """A stored effect on an outcome that should decrease: rel -0.12 = 12 % fewer."""
    return {
        "outcome": "short_term_sick_days",
        "relative_estimate": rel,
        "relative_ci_low": rel - 0.05 if low is None else low,
        "relative_ci_high": rel + 0.05 if high is None else high,
        "confidence": 0.95,
        **absolute,
    }


def amounts(proposal: dict) -> list[str]:
    return [line["amount"] for line in proposal["lines"]]


# --- rounding: once, to öre, half to even ---------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "paid"),
    [
        ("1000.01", "500.00"),  # 1000.01 x 0.5 = 500.005 -> the even öre 500.00 (half-up: .01)
        ("1000.03", "500.02"),  # 1000.03 x 0.5 = 500.015 -> the even öre 500.02
        ("1000.05", "500.02"),  # 500.025 -> 500.02
    ],
)
def test_rounding_is_half_even_once(tmp_path, amount, paid):
    plan = make_plan(
        tmp_path,
        [{"kind": "linear_to_target", "amount": amount, "target_relative_reduction": 0.12}],
    )
    # improvement 0.06 / target 0.12 = 0.5 exactly
    assert amounts(propose(plan, effect(-0.06))) == [paid]


# --- threshold_tiers --------------------------------------------------------------------------

TIERS = [
    {"min_relative_reduction": 0.05, "share": 0.25},
    {"min_relative_reduction": 0.10, "share": 0.5},
    {"min_relative_reduction": 0.15, "share": 1},
]


@pytest.mark.parametrize(
    ("improvement", "paid"),
    [
        (0.30, "1000000.00"),  # above the top tier: share 1, the maximum
        (0.15, "1000000.00"),  # exactly at the top tier
        (0.1234, "734000.00"),  # 0.5 + (1 - 0.5) x (0.1234 - 0.10) / 0.05 = 0.734
        (0.10, "500000.00"),  # exactly at the middle tier
        (0.075, "375000.00"),  # 0.25 + 0.25 x 0.025 / 0.05 = 0.375
        (0.05, "250000.00"),  # exactly at the threshold: reached ("at least 5 %")
        (0.0499, "0.00"),  # just below the threshold: nothing
        (0.0, "0.00"),  # no effect
        (-0.08, "0.00"),  # got worse
    ],
)
def test_threshold_tiers(tmp_path, improvement, paid):
    plan = make_plan(
        tmp_path, [{"kind": "threshold_tiers", "amount": "1000000.00", "tiers": TIERS}]
    )
    p = propose(plan, effect(-improvement))
    assert amounts(p) == [paid] and p["lines"][0]["max_amount"] == "1000000.00"


def test_threshold_tiers_maximum_below_one(tmp_path):
    tiers = [
        {"min_relative_reduction": 0.05, "share": 0.2},
        {"min_relative_reduction": 0.1, "share": 0.8},
    ]
    plan = make_plan(tmp_path, [{"kind": "threshold_tiers", "amount": "1000.00", "tiers": tiers}])
    p = propose(plan, effect(-0.5))
    assert amounts(p) == ["800.00"] and p["maximum"] == "800.00"  # 1000 x 0.8
    assert p["lines"][0]["achievement"] == "1.000000"  # of the rule's maximum
    p = propose(plan, effect(-0.075))  # 0.2 + 0.6 x 0.025 / 0.05 = 0.5 -> 500.00 = 0.625 x 800
    assert amounts(p) == ["500.00"] and p["lines"][0]["achievement"] == "0.625000"


@pytest.mark.parametrize(
    ("bound", "paid"),
    [
        (-0.0499, "0.00"),  # the least favourable bound 0.0499 does not reach the 0.05 threshold
        (-0.05, "700000.00"),  # it reaches it: the point 0.12 pays 0.5 + 0.5 x 0.02 / 0.05 = 0.7
        (-0.11, "700000.00"),  # the bound only has to clear the threshold, not the point's tier
    ],
)
def test_threshold_tiers_bound_must_clear(tmp_path, bound, paid):
    rule = {"kind": "threshold_tiers", "amount": "1000000.00", "tiers": TIERS}
    plan = make_plan(tmp_path, [{**rule, "bound_must_clear": True}])
    assert amounts(propose(plan, effect(-0.12, low=-0.2, high=bound))) == [paid]
    plan = make_plan(tmp_path, [rule])  # without the requirement the point alone decides
    assert amounts(propose(plan, effect(-0.12, low=-0.2, high=bound))) == ["700000.00"]


def test_threshold_tiers_under_the_threshold_basis(tmp_path):
    rule = {"kind": "threshold_tiers", "amount": "1000000.00", "tiers": TIERS}
    plan = make_plan(tmp_path, [rule], basis="threshold")
    assert amounts(propose(plan, effect(-0.12, high=0.01))) == ["0.00"]  # not significant
    assert amounts(propose(plan, effect(-0.12, high=-0.01))) == ["700000.00"]


# --- share_of_savings -------------------------------------------------------------------------

SAVINGS = {"kind": "share_of_savings", "share": 0.5, "cap": "1000000.00"}


def cost_effect(estimate: float, low: float = -2000.0, high: float = -100.0) -> dict:
    """An effect on a public cost per person (SEK): -1234.5678 = 1 234.5678 SEK saved each."""
    return effect(-0.1, estimate=estimate, ci_low=low, ci_high=high)


@pytest.mark.parametrize(
    ("estimate", "persons", "paid"),
    [
        (-1234.5678, 400, "246913.56"),  # 1234.5678 x 400 = 493827.12; x 0.5 = 246913.56
        (-1234.56789, 400, "246913.58"),  # read as 1234.5679: x 400 x 0.5 = 246913.58
        (-1234.5678, 5000, "1000000.00"),  # 3086419.50 is above the cap
        (0.0, 400, "0.00"),  # no saving
        (200.0, 400, "0.00"),  # costs rose: -200 x 400 x 0.5 = -40000 -> never negative
        (-1234.5678, 0, "0.00"),  # nobody treated
    ],
)
def test_share_of_savings_per_person(tmp_path, estimate, persons, paid):
    plan = make_plan(tmp_path, [SAVINGS])
    p = propose(
        plan, cost_effect(estimate, low=-3000, high=300), counts={"persons_treated": persons}
    )
    assert amounts(p) == [paid]


def test_share_of_savings_may_pay_back_when_the_plan_says_so(tmp_path):
    plan = make_plan(tmp_path, [{**SAVINGS, "allow_negative": True}])
    counts = {"persons_treated": 400}
    # -200 x 400 x 0.5 = -40000.00: the provider pays back
    assert amounts(propose(plan, cost_effect(200.0, 0, 400), counts=counts)) == ["-40000.00"]
    plan = make_plan(tmp_path, [{**SAVINGS, "allow_negative": True, "cap": "30000.00"}])
    assert amounts(propose(plan, cost_effect(200.0, 0, 400), counts=counts)) == ["-30000.00"]


def test_share_of_savings_reads_the_basis(tmp_path):
    plan = make_plan(tmp_path, [SAVINGS], basis="conservative_ci_bound")
    # the least favourable bound of a decrease is the upper end: 100 SEK x 400 x 0.5 = 20000
    p = propose(plan, cost_effect(-1234.5678, -2000, -100), counts={"persons_treated": 400})
    assert amounts(p) == ["20000.00"]
    plan = make_plan(tmp_path, [SAVINGS], basis="threshold")
    p = propose(
        plan,
        effect(-0.1, high=0.01, estimate=-1234.5678, ci_low=-2000, ci_high=10),
        counts={"persons_treated": 400},
    )
    assert amounts(p) == ["0.00"]  # the relative bound +1 % is not better than 0: pays 0


def test_share_of_savings_total(tmp_path):
    plan = make_plan(tmp_path, [{**SAVINGS, "savings": "total"}])
    # 1000000.01 x 0.5 = 500000.005 -> 500000.00 (half to even); no effect needed
    p = propose(plan, None, savings_total="1000000.01")
    assert amounts(p) == ["500000.00"] and p["range"] == []
    assert p["decision"]["pays_on"] == "the rules' own inputs"
    with pytest.raises(PaymentInputError, match=r"needs the measured savings total"):
        propose(plan, None)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            1000.5,
            "savings_total must be an exact decimal (a string such as '1250000.00', an int or "
            "a Decimal), not float 1000.5",
        ),
        (
            "12,5",
            "savings_total must be an exact decimal (a string such as '1250000.00', an int or "
            "a Decimal), not str '12,5'",
        ),
        ("NaN", "savings_total must be a finite amount, not 'NaN'"),
    ],
)
def test_share_of_savings_total_must_be_exact(tmp_path, value, message):
    plan = make_plan(tmp_path, [{**SAVINGS, "savings": "total"}])
    with pytest.raises(PaymentInputError) as err:
        propose(plan, None, savings_total=value)
    assert str(err.value) == message


def test_share_of_savings_needs_persons_treated(tmp_path):
    plan = make_plan(tmp_path, [SAVINGS])
    with pytest.raises(PaymentInputError) as err:
        propose(plan, cost_effect(-1000.0), counts={"persons_treated": -1})
    assert str(err.value) == (
        "payment rule share_of_savings (savings: per_person_effect) needs "
        "counts['persons_treated'] as a whole number >= 0; got -1"
    )
    assert isinstance(err.value, UserError)


# --- guaranteed_conditional -------------------------------------------------------------------

BOND = {
    "kind": "guaranteed_conditional",
    "capital": "10000000.00",
    "guaranteed_share": 0.4,
    "conditional_share": 0.6,
    "target_relative_reduction": 0.12,
    "return_cap": 0.10,
    "return_floor": -0.20,
}


@pytest.mark.parametrize(
    ("improvement", "paid"),
    [
        (0.12, "10000000.00"),  # 4 000 000 + 0.6 x 10 000 000 x 1 = the capital: return 0
        (0.09, "8500000.00"),  # 4 000 000 + 6 000 000 x 0.75 = 8 500 000: return -15 %
        (0.0801, "8005000.00"),  # 0.0801 / 0.12 = 0.6675: 4 000 000 + 4 005 000, above the floor
        (0.08, "8000000.00"),  # 0.08 / 0.12 = 2/3: 4 000 000 + 4 000 000 = exactly the floor
        (0.06, "8000000.00"),  # 4 000 000 + 3 000 000 = 7 000 000 (-30 %) -> floor -20 %
        (0.0, "8000000.00"),  # only the guaranteed 4 000 000 -> floor 8 000 000
        (-0.05, "8000000.00"),  # worse: achievement 0, the floor holds
        (0.1296, "10480000.00"),  # achievement 1.08: 4 000 000 + 6 480 000: return +4.8 %
        (0.15, "11000000.00"),  # 4 000 000 + 7 500 000 = 11 500 000 (+15 %) -> cap +10 %
    ],
)
def test_guaranteed_conditional(tmp_path, improvement, paid):
    plan = make_plan(tmp_path, [BOND])
    p = propose(plan, effect(-improvement))
    assert amounts(p) == [paid] and p["maximum"] == "11000000.00"


def test_guaranteed_conditional_without_a_floor_repays_the_guaranteed_part(tmp_path):
    plan = make_plan(tmp_path, [{k: v for k, v in BOND.items() if k != "return_floor"}])
    assert amounts(propose(plan, effect(0.05))) == ["4000000.00"]  # 0.4 x 10 000 000


def test_guaranteed_conditional_floor_holds_when_the_evidence_allows_nothing(tmp_path):
    plan = make_plan(tmp_path, [BOND], basis="threshold")
    # point 0.15 would hit the cap, but the interval reaches +1 %: conditional 0, floor 8 000 000
    p = propose(plan, effect(-0.15, high=0.01))
    assert amounts(p) == ["8000000.00"]
    assert "raised to the floor" in p["lines"][0]["explanation"]


# --- none -------------------------------------------------------------------------------------


def test_none_says_no_payment_follows_and_why(tmp_path):
    reason = "IOP partnership: outcomes are followed up, not paid for"
    plan = make_plan(tmp_path, [{"kind": "none", "reason": reason}])
    p = propose(plan, effect(-0.3))
    assert p["total"] == "0.00" and p["maximum"] == "0.00" and amounts(p) == ["0.00"]
    assert p["decision"] == {"pays_on": "nothing", "reason": f"no payment follows: {reason}"}
    assert p["lines"][0]["explanation"] == (f"follow-up report only, no payment follows: {reason}")
    assert propose(plan, None)["total"] == "0.00"  # no effect needed either


def test_a_rule_on_the_effect_needs_one(tmp_path):
    plan = make_plan(tmp_path, [BOND])
    with pytest.raises(PaymentInputError) as err:
        propose(plan, None)
    assert str(err.value) == (
        "the payment rules guaranteed_conditional pay on the effect estimate; none was given"
    )


# --- rate_card --------------------------------------------------------------------------------

CARD = {
    "kind": "rate_card",
    "prices": [
        {"event": "entered_work", "price": "10000.00"},
        {"event": "sustained_13_weeks", "price": "25000.00", "min_duration_days": 91},
    ],
    "cap_per_person": "30000.00",
    "contract_cap": "45000.00",
}

#: (row) person, event, achieved on, days sustained
EVENTS = [
    ("p-b", "entered_work", "2025-02-01", None),  # 1
    ("p-a", "entered_work", "2025-02-01", None),  # 2: same day as row 1, p-a sorts first
    ("p-a", "entered_work", "2025-03-01", None),  # 3: p-a's entry again: claimed once only
    ("p-a", "sustained_13_weeks", "2025-05-01", 90),  # 4: one day short of 91
    ("p-a", "sustained_13_weeks", "2025-06-01", 91),  # 5: exactly 91 days: claimable
    ("p-c", "entered_work", "2025-04-01", None),  # 6
    ("p-b", "sustained_13_weeks", "2025-06-15", 120),  # 7
]


def frame(rows=EVENTS) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "person_id": [r[0] for r in rows],
            "event": [r[1] for r in rows],
            "achieved_on": [dt.date.fromisoformat(r[2]) for r in rows],
            "duration_days": [r[3] for r in rows],
        },
        schema={
            "person_id": pl.Utf8,
            "event": pl.Utf8,
            "achieved_on": pl.Date,
            "duration_days": pl.Int64,
        },
    )


def test_rate_card_caps_per_person_and_contract_in_a_stated_order(tmp_path):
    plan = make_plan(tmp_path, [CARD])
    p = propose(plan, effect(-0.1), events=frame())
    claims = [(c["row"], c["status"], c["amount"]) for c in p["lines"][0]["claims"]]
    # In order of the day achieved, then pseudonym:
    assert claims == [
        (2, "paid", "10000.00"),  # 02-01 p-a: 10 000 (contract 10 000)
        (1, "paid", "10000.00"),  # 02-01 p-b: 10 000 (20 000)
        (3, "already_claimed", "0.00"),  # 03-01 p-a's entry was claimed by row 2
        (6, "paid", "10000.00"),  # 04-01 p-c: 10 000 (30 000)
        (4, "too_short", "0.00"),  # 05-01 p-a: 90 < 91 days
        (5, "capped_contract", "15000.00"),  # 06-01 p-a: 25 000 -> person cap leaves
        #   30 000 - 10 000 = 20 000 -> contract cap leaves 45 000 - 30 000 = 15 000
        (7, "capped_contract", "0.00"),  # 06-15 p-b: the contract cap is reached
    ]
    assert amounts(p) == ["45000.00"] and p["lines"][0]["max_amount"] == "45000.00"
    assert p["variable"] == "45000.00" and p["lines"][0]["achievement"] == "1.000000"


def test_rate_card_contract_cap_reached_exactly(tmp_path):
    plan = make_plan(tmp_path, [{**CARD, "contract_cap": "30000.00"}])
    claims = propose(plan, effect(-0.1), events=frame())["lines"][0]["claims"]
    # rows 2, 1, 6 pay 10 000 each = 30 000, exactly the cap: still "paid"; then nothing is left
    assert [(c["row"], c["status"], c["amount"]) for c in claims if c["amount"] != "0.00"] == [
        (2, "paid", "10000.00"),
        (1, "paid", "10000.00"),
        (6, "paid", "10000.00"),
    ]
    assert {c["row"]: c["status"] for c in claims}[5] == "capped_contract"


def test_rate_card_cap_per_person(tmp_path):
    plan = make_plan(tmp_path, [{**CARD, "contract_cap": "100000.00"}])
    p = propose(plan, effect(-0.1), events=frame())
    by_row = {c["row"]: (c["status"], c["amount"]) for c in p["lines"][0]["claims"]}
    assert by_row[5] == ("capped_person", "20000.00")  # p-a: 30 000 - 10 000 already paid
    assert by_row[7] == ("capped_person", "20000.00")  # p-b likewise
    assert amounts(p) == ["70000.00"]  # 3 x 10 000 + 20 000 + 20 000


def test_rate_card_claims_once_and_order_does_not_depend_on_delivery_order(tmp_path):
    plan = make_plan(tmp_path, [{**CARD, "contract_cap": "100000.00"}])
    rows = [
        ("p-a", "sustained_13_weeks", "2025-06-01", 200),
        ("p-a", "sustained_13_weeks", "2025-06-01", 95),  # the same event twice
        ("p-a", "sustained_13_weeks", "2025-06-01", None),
    ]
    for ordered in (rows, rows[::-1]):
        claims = propose(plan, effect(-0.1), events=frame(ordered))["lines"][0]["claims"]
        # longest first, unknown duration last: the 200-day row claims, the others cannot
        assert [(c["duration_days"], c["status"]) for c in claims] == [
            (200, "paid"),
            (95, "already_claimed"),
            (None, "too_short"),
        ]
    assert amounts(propose(plan, effect(-0.1), events=frame(rows))) == ["25000.00"]


def test_rate_card_without_events_pays_nothing(tmp_path):
    plan = make_plan(tmp_path, [CARD])
    assert amounts(propose(plan, effect(-0.1), events=frame([]))) == ["0.00"]


@pytest.mark.parametrize(
    ("events", "message"),
    [
        (
            None,
            "payment rule rate_card needs an events frame (person_id, event, achieved_on, "
            "duration_days); none was given",
        ),
        (frame().drop("duration_days"), "rate card events: column 'duration_days' is missing"),
        (
            frame().with_columns(pl.col("achieved_on").cast(pl.Utf8)),
            "rate card events: column 'achieved_on' is String, expected Date",
        ),
        (
            frame().with_columns(pl.col("duration_days").cast(pl.Float64)),
            "rate card events: column 'duration_days' is Float64, expected an integer type",
        ),
        (
            frame([("p-a", "entered_wrk", "2025-01-01", None)]),
            "rate card events: row 1: event 'entered_wrk' has no price; did you mean "
            "'entered_work'? (priced: entered_work, sustained_13_weeks)",
        ),
        (
            frame(
                [
                    ("p-a", "entered_work", "2025-01-01", None),
                    (None, "entered_work", "2025-01-01", None),
                ]
            ),
            "rate card events: row 2: person_id is empty",
        ),
        (
            frame([("p-a", "sustained_13_weeks", "2025-01-01", -3)]),
            "rate card events: row 1: duration_days is negative",
        ),
        (
            # Skatteverket's test personnummer where a pseudonym belongs: refused, not echoed
            frame(
                [
                    ("p-a", "entered_work", "2025-01-01", None),
                    ("19121212-1212", "entered_work", "2025-01-01", None),
                ]
            ),
            "rate card events: 'person_id' (1 row) hold personal identity numbers; pass the "
            "pseudonyms made at ingest, never identity numbers",
        ),
    ],
)
def test_rate_card_bad_events(tmp_path, events, message):
    plan = make_plan(tmp_path, [CARD])
    with pytest.raises(PaymentInputError) as err:
        propose(plan, effect(-0.1), events=events)
    assert str(err.value) == message


# --- several rules, and what is variable -------------------------------------------------------


def test_fixed_beside_a_rate_card(tmp_path):
    plan = make_plan(tmp_path, [{"kind": "fixed", "amount": "5000.00"}, CARD])
    p = propose(plan, None, events=frame())
    assert amounts(p) == ["5000.00", "45000.00"] and p["total"] == "50000.00"
    assert p["variable"] == "45000.00" and p["variable_maximum"] == "45000.00"
    assert p["maximum"] == "50000.00" and p["measured_improvement"] is None
