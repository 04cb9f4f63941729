"""The employment_outcome metric's `earnings`: the exact earnings delivered for the months
after enrolment up to the measurement end, per participant, as the estimators' y."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl
import yaml

from utfall import person_metrics, recompute
from utfall.paths import EXAMPLE_PLANS
from utfall.plan import load_plan

D = dt.date


def _plan(tmp_path):
    data = yaml.safe_load((EXAMPLE_PLANS / "employment_soc.yaml").read_text(encoding="utf-8"))
    data["outcomes"].append(
        {
            "id": "earnings_after",
            "metric": "employment_outcome",
            "source": "sysselsattning",
            "unit": "kronor earned after enrolment",
            "desired_direction": "increase",
            "parameters": {"outcome": "earnings"},
        }
    )
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_plan(path)


def _rows(source: str, rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"source": source, "_file": "f.csv", "_line": i + 2, **r} for i, r in enumerate(rows)]
    )


def test_earnings_are_the_sum_after_enrolment_and_missing_months_count_zero(tmp_path):
    plan = _plan(tmp_path)
    people = _rows(
        "deltagare",
        [
            {"person_id": p, "treated": t, "enrolled_on": D(2024, 1, 15), "exit_on": None}
            | {"exit_reason": None, "age": a, "sex": "F"}
            for p, t, a in (("a", 1, 30), ("b", 0, 40), ("c", 0, 50))
        ],
    ).with_columns(pl.col("treated").cast(pl.Int8), pl.col("exit_on").cast(pl.Date))
    months = [
        # a: the enrolment month's pay is before, so not counted; then 100.50 + 200.25
        ("a", D(2024, 1, 1), "employed", "999.00"),
        ("a", D(2024, 2, 1), "employed", "100.50"),
        ("a", D(2024, 3, 1), "unemployed", None),
        ("a", D(2024, 4, 1), "employed", "200.25"),
        # b: never earned: 0.00, not dropped
        ("b", D(2024, 2, 1), "unemployed", None),
        # c: one month, and a month after the measurement end that must not count
        ("c", D(2025, 12, 1), "employed", "50.00"),
        ("c", D(2026, 1, 1), "employed", "70.00"),
    ]
    status = _rows(
        "sysselsattning",
        [dict(zip(("person_id", "month", "status", "earnings"), m, strict=True)) for m in months],
    ).with_columns(pl.col("earnings").cast(pl.Decimal(18, 2)))
    values = _rows(
        "deltagare",
        [
            {"variable": v, "role": "covariate", "value_num": n, "value_text": t}
            for v, n, t in (("office", None, "x"), ("prior_unemployed_months", 3.0, None))
        ],
    )
    # every person's covariates: one row per delivered row (lines 2..4) and variable
    values = pl.concat(
        [values.with_columns(pl.lit(line).alias("_line")) for line in (2, 3, 4)]
    ).with_columns(pl.col("value_num").cast(pl.Float64), pl.col("value_text").cast(pl.Utf8))
    con, run = recompute.staging_database(
        plan,
        {"participants": people, "employment_status": status, "values": values},
    )
    frame, _flow = person_metrics.employment_outcome(con, plan, run, "earnings_after")
    got = dict(zip(frame["person_id"], frame["y"], strict=True))
    assert got == {"a": 300.75, "b": 0.0, "c": 50.0}
    assert Decimal("100.50") + Decimal("200.25") == Decimal(str(got["a"]))
