"""Small-cell suppression over counts that add up: primary and complementary (secondary).

Hiding a small count is not enough when the counts it is part of add up: enrolled =
eligible + excluded, so a hidden "excluded (age): 3" is enrolled minus the rest. `protect`
takes the counts and the sums they satisfy (`relations`: a total and its parts) and hides:

* primary: every count with 0 < n < k;
* secondary: while some relation has exactly one hidden cell (it could be solved for), or
  its hidden parts (the total shown) hold together fewer than k persons (their small sum
  could be read off), the smallest shown nonzero part of that relation is hidden too (a
  zero only when no other is left), else its total. Counts that are published elsewhere
  (`public`, e.g. the analysed persons, which the effect's n states) are never hidden, so a
  relation whose only other cells are public hides a part or its total instead.

Ties are broken by the cells' order in `counts`, so the result is deterministic. The loop
ends: each round hides one more cell or stops.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence


def protect(
    counts: Mapping[Hashable, int],
    relations: Sequence[tuple[Hashable, Sequence[Hashable]]],
    k: int,
    public: frozenset | set = frozenset(),
) -> dict[Hashable, str | None]:
    """Cell -> "primary", "secondary" or None (shown); see the module docstring."""
    status: dict[Hashable, str | None] = {
        c: ("primary" if 0 < n < k and c not in public else None) for c, n in counts.items()
    }
    order = {c: i for i, c in enumerate(counts)}

    def exposed(total: Hashable, parts: Sequence[Hashable]) -> bool:
        cells = [total, *parts]
        hidden = [c for c in cells if status.get(c)]
        if len(hidden) == 1:
            return True
        hidden_parts = [c for c in parts if status.get(c)]
        return (
            bool(hidden_parts)
            and not status.get(total)
            and (sum(counts[c] for c in hidden_parts) < k)
        )

    changed = True
    while changed:
        changed = False
        for total, parts in relations:
            if not exposed(total, parts):
                continue
            shown = sorted(
                (c for c in parts if not status.get(c) and c not in public),
                # a hidden 0 hides little (counts are never negative): nonzero cells first
                key=lambda c: (counts[c] == 0, counts[c], order[c]),
            )
            if shown:
                status[shown[0]] = "secondary"
            elif not status.get(total) and total not in public:
                status[total] = "secondary"
            else:
                continue  # every other cell is public: nothing more can be hidden
            changed = True
    return status
