"""Complementary suppression of the person flow: no hidden count can be worked out from the
shown ones and the sums they satisfy (checked by linear algebra, as an attacker would)."""

from __future__ import annotations

import numpy as np
import pytest

from utfall.disclosure import protect
from utfall.report import flow_cells, flow_suppression, person_outcome_flows

K = 5


def arm(group, enrolled, excluded, dropped):
    """An arm of a flow: excluded {criterion: n}, dropped {(reason, column): n}."""
    eligible = enrolled - sum(excluded.values())
    return {
        "group": group,
        "enrolled": enrolled,
        "excluded": [{"criterion": c, "persons": n} for c, n in excluded.items()],
        "eligible": eligible,
        "dropped": [{"reason": r, "column": c, "persons": n} for (r, c), n in dropped.items()],
        "analysed": eligible - sum(dropped.values()),
    }


def determined(flows, hidden) -> list:
    """The hidden cells an attacker can solve for: unknowns = hidden cells, one equation per
    relation (total - parts = 0, known cells moved to the right); cell j is determined when
    its unit vector lies in the row space of the coefficient matrix."""
    cells, relations, _public = flow_cells(flows)
    unknown = [c for c in cells if hidden.get(c)]
    if not unknown:
        return []
    index = {c: i for i, c in enumerate(unknown)}
    rows = []
    for total, parts in relations:
        row = np.zeros(len(unknown))
        for c, sign in [(total, 1), *((p, -1) for p in parts)]:
            if c in index:
                row[index[c]] += sign
        if row.any():
            rows.append(row)
    a = np.array(rows) if rows else np.zeros((0, len(unknown)))
    rank = np.linalg.matrix_rank(a) if rows else 0
    out = []
    for c, j in index.items():
        e = np.zeros(len(unknown))
        e[j] = 1
        if np.linalg.matrix_rank(np.vstack([a, e])) == rank:
            out.append(c)
    return out


CASES = {
    "one small exclusion": [
        {
            "outcome": "below_42_12m",
            "arms": [
                arm("treated", 120, {"age": 3, "baseline_hba1c": 36}, {("no_outcome", None): 9}),
                arm(
                    "comparison", 300, {"age": 50, "baseline_hba1c": 39}, {("no_outcome", None): 20}
                ),
            ],
        }
    ],
    "a small drop and no eligibility": [
        {
            "outcome": "entered_work",
            "arms": [
                arm("treated", 80, {}, {("no_outcome", None): 2}),
                arm("comparison", 90, {}, {("no_outcome", None): 0}),
            ],
        },
        {
            "outcome": "public_cost_9m",
            "arms": [
                arm("treated", 80, {}, {("no_outcome", None): 12}),
                arm("comparison", 90, {}, {("no_outcome", None): 14}),
            ],
        },
    ],
}

SUM_CASE = {
    "two small cells in one sum": [
        {
            "outcome": "x",
            "arms": [
                arm("treated", 60, {"age": 1, "baseline_hba1c": 2}, {("no_outcome", None): 7}),
                arm("comparison", 60, {"age": 8, "baseline_hba1c": 9}, {("no_outcome", None): 7}),
            ],
        }
    ],
}


@pytest.mark.parametrize("name", list(CASES))
def test_no_hidden_count_can_be_solved_for(name):
    flows = CASES[name]
    hidden = flow_suppression(flows, K)
    cells, _, public = flow_cells(flows)
    small = [c for c, n in cells.items() if 0 < n < K and c not in public]
    assert small and all(hidden[c] == "primary" for c in small)
    assert determined(flows, hidden) == []
    # and the primary rule alone would have given them away
    primary = {c: ("primary" if c in small else None) for c in cells}
    assert set(determined(flows, primary)) & set(small)


def test_the_report_shows_none_for_every_hidden_cell_and_the_rest_as_counted():
    flows = CASES["one small exclusion"]
    shown = person_outcome_flows(flows, K)
    treated = shown[0]["arms"][0]
    assert [e["persons"] for e in treated["excluded"]] == [None, None]  # 3, and 36 beside it
    assert treated["enrolled"] == 120 and treated["eligible"] == 81 and treated["analysed"] == 72
    comparison = shown[0]["arms"][1]
    assert [e["persons"] for e in comparison["excluded"]] == [50, 39]


def test_protect_hides_the_smallest_part_then_the_total_never_a_public_cell():
    counts = {"total": 20, "a": 2, "b": 10, "c": 8}
    status = protect(counts, [("total", ["a", "b", "c"])], K)
    assert status == {"total": None, "a": "primary", "c": "secondary", "b": None}
    # a relation whose other part is public: the total goes instead
    status = protect({"t": 30, "n": 28, "d": 2}, [("t", ["n", "d"])], K, public={"n"})
    assert status == {"t": "secondary", "n": None, "d": "primary"}


def test_two_small_cells_in_one_sum_hide_a_third_so_their_sum_is_not_small():
    """Primary suppression of excluded 1 and 2 would show their sum (enrolled - eligible =
    3) though neither cell alone: a third cell joins them, so the hidden sum is >= K."""
    flows = SUM_CASE["two small cells in one sum"]
    hidden = flow_suppression(flows, K)
    assert determined(flows, hidden) == []
    cells, relations, _ = flow_cells(flows)
    for total, parts in relations:
        hidden_parts = [p for p in parts if hidden.get(p)]
        if hidden_parts and not hidden.get(total):
            assert sum(cells[p] for p in hidden_parts) >= K, (total, hidden_parts)
    treated = person_outcome_flows(flows, K)[0]["arms"][0]
    assert treated["eligible"] is None or all(e["persons"] is None for e in treated["excluded"])


def test_nested_group_counts_hide_a_count_whose_difference_is_small():
    from utfall.report import population_flow

    groups = [
        # 3 persons not eligible: in_roster or eligible must go with it
        {"group": "treated", "in_roster": 1500, "eligible": 1497, "analysed": 1497},
        # differences of 100 and 0: nothing to hide
        {"group": "comparison", "in_roster": 1800, "eligible": 1700, "analysed": 1700},
        # a small analysed count hides itself and one more
        {"group": "other", "in_roster": 40, "eligible": 40, "analysed": 3},
    ]
    shown = population_flow([], groups, K)["groups"]
    treated, comparison, other = shown
    # eligible goes, and analysed with it: eligible - analysed = 0 would give eligible back
    assert treated == {"group": "treated", "in_roster": 1500, "eligible": None, "analysed": None}
    assert comparison == {**groups[1]}
    # analysed 3 goes; eligible = analysed + 37 and in_roster = eligible + 0 follow it
    assert other == {"group": "other", "in_roster": None, "eligible": None, "analysed": None}
