"""Quality rules of the generic kinds, `person_table` and `unit_panel`.

Validation already guarantees each row (see schemas.generic); what it cannot see is the
delivery as a whole: a person table or panel in which one group is missing altogether
(say every comparison row was quarantined, or the extract was filtered on the treated
units), or a panel with no baseline or no measurement rows. Those fail `value_ranges`
(severity block by default) before any effect is estimated. A person table has no dates,
so the monthly checks (volume by month, months present) do not apply to it; a unit
panel's rows are counted by the month of their period for `volume_vs_history`.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from utfall.plan import Plan
from utfall.quality.kinds import KindSpec, ValueRule

GROUPS = ["comparison", "treated"]
PHASES = ["baseline", "measurement"]


def _both_groups() -> ValueRule:
    import great_expectations.expectations as gxe

    return (
        "group",
        "(the delivery lacks the treated or the comparison group)",
        gxe.ExpectColumnDistinctValuesToEqualSet(column="group", value_set=GROUPS),
    )


def person_value_rules(plan: Plan) -> list[ValueRule]:
    return [_both_groups()]


def _treated_group() -> ValueRule:
    import great_expectations.expectations as gxe

    return (
        "group",
        "(the delivery lacks the treated group)",
        gxe.ExpectColumnDistinctValuesToContainSet(column="group", value_set=["treated"]),
    )


def panel_value_rules(plan: Plan) -> list[ValueRule]:
    """Both groups, unless the plan's method reads the treated series alone (historical,
    its): then the treated group suffices. Baseline and measurement periods always."""
    import great_expectations.expectations as gxe

    from utfall.estimators.base import registry

    series_only = not registry()[plan.counterfactual["method"]].needs_comparison
    return [
        _treated_group() if series_only else _both_groups(),
        (
            "phase",
            "(the delivery lacks baseline or measurement periods)",
            gxe.ExpectColumnDistinctValuesToEqualSet(column="phase", value_set=PHASES),
        ),
    ]


def no_profile(staged: pl.DataFrame, months: list[dt.date]) -> list[int]:
    """A person table has no dates: nothing is counted by month."""
    return [0] * len(months)


def panel_profile(staged: pl.DataFrame, months: list[dt.date]) -> list[int]:
    """Rows by the month of their period."""
    counts = staged.select(pl.col("period").dt.truncate("1mo").alias("month")).group_by("month")
    by_month = dict(counts.len().iter_rows())
    return [int(by_month.get(m, 0)) for m in months]


PERSON_SPEC = KindSpec(
    kind="person_table",
    columns=("person_id", "group"),
    counted="rows",
    extra_checks=(),
    profile=no_profile,
    value_rules=person_value_rules,
    common_checks=("null_share", "value_ranges"),
)

PANEL_SPEC = KindSpec(
    kind="unit_panel",
    columns=("unit_id", "period", "phase", "group", "treatment_start", "weight"),
    counted="rows",
    extra_checks=(),
    profile=panel_profile,
    value_rules=panel_value_rules,
    meaningful_nulls={
        "treatment_start": "empty means never treated (or the plan maps a treated flag)",
        "weight": "empty when the plan maps no weight column: every row weighs 1",
    },
    common_checks=("volume_vs_history", "null_share", "value_ranges"),
)
