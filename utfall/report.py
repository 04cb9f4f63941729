"""The validator report: report.json (machine-readable), report.html and report.pdf
(readable), manifest.json.

`report.json` and `report.html` depend only on the inputs, the plan and the code version
(package version and git commit), so a re-run gives the same bytes; the run's id and time go
into `manifest.json`, which also lists the sha256 of each report file and of each input, so
a validator can tell that nothing was changed after the run. `report.pdf` is printed from
the same HTML by headless Chromium (:mod:`utfall.pdf`) with the run's time added; its bytes
are not deterministic and it is listed apart in the manifest.

**Report hash.** The sha256 of report.json's bytes as written by :func:`dumps` (keys sorted,
2-space indent, UTF-8, one trailing newline): ``sha256sum report.json`` reproduces it. The
HTML and PDF show it in their header, so a printed page names the exact JSON it came from.

**Plan hash.** ``sha256:`` + the sha256 of the plan's canonical JSON (the YAML read into
data, then keys sorted, no whitespace, UTF-8; :func:`utfall.plan.canonical_json`), so
re-formatting the YAML or re-ordering its keys keeps the hash and any change of meaning
changes it. ``sha256sum plan.yaml`` hashes the file's bytes (comments, spacing) and so
differs; ``utfall plan show PLAN`` prints the plan hash.

The report assembles; it computes no estimate. Per-unit results are shown with small-cell
suppression (:func:`suppress_cells`): primary (fewer than ``disclosure.min_cell_size``
employees) and secondary (complementary cells, so that a group total minus the published
cells never gives one suppressed cell away). Diagnostics are rendered generically from the
estimator's allow-list (:func:`utfall.estimators.publishable`), never by method name.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
import subprocess
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

import utfall
from utfall.metrics import group_series
from utfall.plan import Plan

REPORT_FORMAT = 2
TEMPLATES = Path(__file__).resolve().parent / "templates"

#: Diagnostics with per-unit or per-quarter values: kept in `marts.effects`, left out of
#: the report even if an estimator's allow-list names them, where they would bypass
#: small-cell suppression (the report's per-unit table is suppressed instead).
UNIT_LEVEL_DIAGNOSTICS = ("units", "period_means")

HASH_METHOD = (
    "sha256 of the plan's canonical JSON: the YAML read into data, keys sorted, no "
    "whitespace, UTF-8. Re-formatting the YAML or re-ordering keys keeps it; sha256sum of the "
    "YAML file hashes its bytes (comments, spacing) and so differs. Reproduce it with "
    "utfall plan show PLAN."
)
REPORT_HASH_METHOD = (
    "sha256 of report.json's bytes as written (keys sorted, 2-space indent, UTF-8, trailing "
    "newline): sha256sum report.json reproduces it."
)

#: Plain words per method: what it does, what must hold, what it cannot tell. A method with
#: no entry is described from its registry entry and says that no summary was written.
METHOD_TEXT: dict[str, dict[str, Any]] = {
    "did_2x2": {
        "plain": (
            "Difference in differences on units: each unit's outcome level before (baseline) "
            "and during the measurement period, the change of the treated units compared "
            "with the change of the comparison units over the same time. The comparison "
            "units' change stands in for what would have happened to the treated units "
            "without the intervention."
        ),
        "assumptions": [
            "Parallel trends: without the intervention, treated and comparison units would "
            "have changed alike (in levels on the absolute scale, in ratios on the relative "
            "scale).",
            "No spill-over: the intervention does not change the comparison units' outcome.",
            "No anticipation: the treated units did not change before the start.",
            "The units, not the employees, were assigned: uncertainty is clustered by unit.",
        ],
        "limitations": [
            "The pre-trend tests have moderate power: a clean pre-test is no proof of "
            "parallel trends.",
            "With few units (under about 5 treated) the analytic interval rests on very few "
            "clusters; randomization inference or the wild bootstrap is more reliable.",
            "Anything else that changed for the treated units only at the start (a "
            "reorganisation, a new manager) is counted as effect.",
        ],
    },
}

GENERAL_LIMITATIONS = [
    "Only what is delivered is measured: rows that break a rule are quarantined and counted "
    "nowhere (see data quality); a systematic error that breaks no rule is not detected.",
    "The estimate is uncertain: the interval, not the point, shows what the data support; "
    "the payment range shows what that uncertainty means in money.",
]


def _round(x: float | None, digits: int = 6) -> float | None:
    """Rounded for the report; None when there is no number (a phase without rows gives
    0/0, which strict JSON cannot hold)."""
    return None if x is None or not math.isfinite(x) else float(round(x, digits))


def outcome_series(plan: Plan, panel: pl.DataFrame, outcome_id: str) -> list[dict[str, Any]]:
    """Group values per period, with cells under the disclosure threshold suppressed."""
    need = {"outcome", "group", "period_start", "phase", "employees", "numerator", "denominator"}
    if panel.height == 0 or not need <= set(panel.columns):
        return []  # no panel of periods (a person-level method): nothing to chart
    series = group_series(panel, outcome_id)
    k = plan.min_cell_size
    # A delivered unit panel holds aggregates, not persons (employees null): its cells are
    # not person counts and are not suppressed.
    sub = panel.filter(pl.col("outcome") == outcome_id)
    counts_persons = sub.height == 0 or sub["employees"].null_count() < sub.height
    rows = []
    for r in series.iter_rows(named=True):
        suppressed = counts_persons and r["employees"] < k
        rows.append(
            {
                "period_start": r["period_start"].isoformat(),
                "phase": r["phase"],
                "group": r["group"],
                "employees": None if suppressed or not counts_persons else r["employees"],
                "value": None if suppressed else _round(r["value"]),
                "suppressed": suppressed,
            }
        )
    return rows


def counterfactual_series(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Treated counterfactual per period: comparison value + the pooled baseline gap."""
    by = {(r["group"], r["period_start"]): r for r in series}
    starts = sorted({r["period_start"] for r in series})
    base = [s for s in starts if by.get(("treated", s), {}).get("phase") == "baseline"]
    gaps = [
        by[("treated", s)]["value"] - by[("comparison", s)]["value"]
        for s in base
        if by.get(("treated", s), {}).get("value") is not None
        and by.get(("comparison", s), {}).get("value") is not None
    ]
    if not gaps:
        return []
    gap = sum(gaps) / len(gaps)
    out = []
    for s in starts:
        c = by.get(("comparison", s))
        if c and c["value"] is not None:
            out.append({"period_start": s, "value": _round(c["value"] + gap)})
    return out


def effect_warnings(effect: Mapping[str, Any]) -> list[str]:
    """An effect's warnings (`EffectResult.warnings`), then those an estimator put in its
    diagnostics under "warnings" (did_2x2 does), each once."""
    out = list(effect.get("warnings") or [])
    for w in (effect.get("diagnostics") or {}).get("warnings") or []:
        if w not in out:
            out.append(w)
    return out


def public_effect(effect: Mapping[str, Any]) -> dict[str, Any]:
    """An effect result fit for the report: the estimator's publishable diagnostics only
    (its allow-list), minus per-unit detail, and its warnings as one list."""
    from utfall.estimators import publishable

    diagnostics = {k: v for k, v in publishable(effect).items() if k not in UNIT_LEVEL_DIAGNOSTICS}
    diagnostics.pop("warnings", None)
    warnings = effect_warnings(effect)
    inference = diagnostics.get("inference")
    if effect.get("n_treated", 5) < 5 and inference in (None, "analytic", "wild_bootstrap"):
        warnings.append(
            f"Only {effect['n_treated']} treated units: the interval rests on very few "
            "clusters and may be too narrow or too wide."
        )
    return {
        "period": "measurement",
        "estimand": "ATT",
        **effect,
        "diagnostics": diagnostics,
        "warnings": warnings,
    }


# --- small-cell suppression -------------------------------------------------------------


def suppress_cells(counts: Mapping[str, int], k: int) -> dict[str, str | None]:
    """Which cells of one group to hide, given their counts and the threshold `k`.

    Primary: a cell with fewer than `k` (and more than 0) persons. Secondary: while the
    hidden cells of the group are exactly one, or hold together fewer than `k` persons,
    the smallest published cell is hidden too, so the group's total minus its published
    cells gives neither one cell nor a small sum. Returns cell -> "primary", "secondary"
    or None. Ties are broken by cell name, so the choice is deterministic.
    """
    status: dict[str, str | None] = {c: None for c in counts}
    for c, n in counts.items():
        if n is not None and 0 < n < k:
            status[c] = "primary"
    hidden = [c for c, s in status.items() if s]
    if not hidden:
        return status
    order = sorted((n, c) for c, n in counts.items() if status[c] is None and n is not None)
    while order and (len(hidden) < 2 or sum(counts[c] for c in hidden) < k):
        _, c = order.pop(0)
        status[c] = "secondary"
        hidden.append(c)
    return status


def unit_results(plan: Plan, panel: pl.DataFrame, outcome_id: str) -> dict[str, Any]:
    """Per unit: its level in each phase and the change, with the group totals.

    `employees` is the unit's smallest period headcount (the smallest cell its levels rest
    on), the number suppression is judged on. Group totals hold every unit, suppressed ones
    included, so suppression is secondary as well as primary (see :func:`suppress_cells`).
    Whether a unit was hidden for its own size or to protect another is not published:
    knowing that a hidden cell is at least `k` would narrow down the other. Denominators
    are not published either, so hidden levels cannot be solved from the group levels.
    """
    need = {"outcome", "unit_id", "group", "phase", "employees", "numerator", "denominator"}
    if panel.height == 0 or not need <= set(panel.columns):
        return {"outcome": outcome_id, "rows": [], "totals": []}
    sub = panel.filter(pl.col("outcome") == outcome_id)
    if sub.height == 0:
        return {"outcome": outcome_id, "rows": [], "totals": []}
    per = (
        sub.group_by("unit_id", "group")
        .agg(
            pl.col("employees").min().alias("employees"),
            *[
                (
                    pl.col("numerator").filter(pl.col("phase") == p).sum()
                    / pl.col("denominator").filter(pl.col("phase") == p).sum()
                ).alias(p)
                for p in ("baseline", "measurement")
            ],
        )
        .sort("group", "unit_id")
    )
    k = plan.min_cell_size
    rows: list[dict[str, Any]] = []
    totals: list[dict[str, Any]] = []
    for group in ("treated", "comparison"):
        g = per.filter(pl.col("group") == group)
        if g.height == 0:
            continue
        counts = dict(zip(g["unit_id"], g["employees"], strict=True))
        status = suppress_cells(counts, k)
        for r in g.iter_rows(named=True):
            hide = status[r["unit_id"]] is not None
            b, m = r["baseline"], r["measurement"]
            change = None if b is None or m is None else m - b
            rows.append(
                {
                    "unit_id": r["unit_id"],
                    "group": group,
                    "employees": None if hide or r["employees"] is None else int(r["employees"]),
                    "baseline": None if hide else _round(b),
                    "measurement": None if hide else _round(m),
                    "change": None if hide else _round(change),
                    "suppressed": hide,
                }
            )
        gs = sub.filter(pl.col("group") == group)
        level = {
            p: (
                gs.filter(pl.col("phase") == p)["numerator"].sum()
                / gs.filter(pl.col("phase") == p)["denominator"].sum()
                if gs.filter(pl.col("phase") == p).height
                else None
            )
            for p in ("baseline", "measurement")
        }
        # A delivered panel holds aggregates without person counts: nothing to suppress.
        counted = g["employees"].null_count() < g.height
        total_n = int(g["employees"].sum()) if counted else None
        small_total = counted and total_n < k
        totals.append(
            {
                "group": group,
                "units": g.height,
                "employees": None if small_total else total_n,
                "baseline": None if small_total else _round(level["baseline"]),
                "measurement": None if small_total else _round(level["measurement"]),
                "suppressed": small_total,
            }
        )
    return {"outcome": outcome_id, "rows": rows, "totals": totals}


# --- sections ---------------------------------------------------------------------------


def flow_cells(flows: list[dict[str, Any]]) -> tuple[dict, list, set]:
    """The person flows as counts that add up, for utfall.disclosure.protect: (cells,
    relations, public). Per arm enrolled = eligible + excluded (per criterion), shared by
    every outcome; per outcome and arm eligible = analysed + dropped (per reason); and
    enrolled treated + comparison = the valid participants (shown in the sources' flow).
    Analysed persons are public: the effect states them as n."""
    cells: dict[tuple, int] = {}
    relations: list[tuple[tuple, list[tuple]]] = []
    public: set[tuple] = {("participants",)}
    seen_arms: set[str] = set()
    for flow in flows:
        for a in flow["arms"]:
            g = a["group"]
            if g not in seen_arms:
                seen_arms.add(g)
                cells[("enrolled", g)] = a["enrolled"]
                cells[("eligible", g)] = a["eligible"]
                excluded = [("excluded", g, e["criterion"]) for e in a["excluded"]]
                cells |= {c: e["persons"] for c, e in zip(excluded, a["excluded"], strict=True)}
                relations.append((("enrolled", g), [("eligible", g), *excluded]))
            o = flow["outcome"]
            dropped = [("dropped", o, g, d["reason"], d["column"]) for d in a["dropped"]]
            cells |= {c: d["persons"] for c, d in zip(dropped, a["dropped"], strict=True)}
            cells[("analysed", o, g)] = a["analysed"]
            public.add(("analysed", o, g))
            relations.append((("eligible", g), [("analysed", o, g), *dropped]))
    if seen_arms:
        cells[("participants",)] = sum(cells[("enrolled", g)] for g in seen_arms)
        relations.append((("participants",), [("enrolled", g) for g in sorted(seen_arms)]))
    return cells, relations, public


def flow_suppression(flows: list[dict[str, Any]], k: int) -> dict[tuple, str | None]:
    """Which flow cells to hide (utfall.disclosure.protect over `flow_cells`)."""
    from utfall.disclosure import protect

    cells, relations, public = flow_cells(flows)
    return protect(cells, relations, k, public)


def person_outcome_flows(flows: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """Per person-data outcome and arm: enrolled = eligible + excluded (per eligibility
    criterion), eligible = analysed + dropped (per reason), counts of persons under `k`
    suppressed, and as many others as keep them from being worked out by subtraction
    (`flow_suppression`; utfall.domains.person.person_flow)."""
    hidden = flow_suppression(flows, k)

    def cell(key: tuple, n: int) -> int | None:
        return None if hidden.get(key) else int(n)

    out = []
    for flow in flows:
        o = flow["outcome"]
        arms = []
        for a in flow["arms"]:
            g = a["group"]
            arms.append(
                {
                    "group": g,
                    "enrolled": cell(("enrolled", g), a["enrolled"]),
                    "excluded": [
                        {
                            "criterion": e["criterion"],
                            "persons": cell(("excluded", g, e["criterion"]), e["persons"]),
                        }
                        for e in a["excluded"]
                    ],
                    "eligible": cell(("eligible", g), a["eligible"]),
                    "dropped": [
                        {
                            "reason": d["reason"],
                            "column": d["column"],
                            "persons": cell(
                                ("dropped", o, g, d["reason"], d["column"]), d["persons"]
                            ),
                        }
                        for d in a["dropped"]
                    ],
                    "analysed": cell(("analysed", o, g), a["analysed"]),
                }
            )
        out.append({"outcome": o, "arms": arms})
    return out


def group_suppression(group: Mapping[str, Any], k: int) -> dict[str, str | None]:
    """Which of a group's nested counts (in_roster >= eligible >= analysed) to hide: a
    count under `k`, and also a shown count whose difference from the next (the persons not
    eligible, or eligible but not analysed: never shown, but read off by subtraction) would
    be under `k` (utfall.disclosure.protect; a difference of 0 or at least `k` gives nothing
    away)."""
    from utfall.disclosure import protect

    stages = [s for s in ("in_roster", "eligible", "analysed") if group.get(s) is not None]
    counts = {s: int(group[s]) for s in stages}
    relations, public = [], set()
    for outer, inner in zip(stages, stages[1:], strict=False):
        gap = f"{outer}-{inner}"
        counts[gap] = counts[outer] - counts[inner]
        relations.append((outer, [inner, gap]))
        if not 0 < counts[gap] < k:
            public.add(gap)  # never shown, but nothing small to give away
    return protect(counts, relations, k, public)


def population_flow(
    reconciliation: list[dict[str, Any]],
    groups: list[dict[str, Any]] | None,
    k: int,
    persons: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Delivered -> valid (after quarantine) per source; valid -> eligible -> analysed per
    group (persons). Counts under `k` are suppressed; a person moved between groups counts
    in both. With `persons` (recompute.persons): per person-data outcome its flow per arm
    (`outcomes`), and the valid lab rows per analyte and conversion (`conversions`, rows,
    not persons, as the quarantine counts)."""
    sources = [
        {
            "source": r["source"],
            "delivered": r["delivered"],
            "quarantined": r["quarantined"],
            "valid": r["loaded"],
            "balances": r["delivered"] == r["loaded"] + r["quarantined"],
        }
        for r in reconciliation
    ]
    out_groups = []
    for g in groups or []:
        hidden = group_suppression(g, k)
        row = {"group": g["group"]}
        for stage in ("in_roster", "eligible", "analysed"):
            n = g.get(stage)
            row[stage] = None if n is None or hidden.get(stage) else int(n)
        out_groups.append(row)
    out: dict[str, Any] = {"sources": sources, "groups": out_groups}
    persons = persons or {}
    if persons.get("outcomes"):
        out["outcomes"] = person_outcome_flows(persons["outcomes"], k)
    if persons.get("conversions"):
        out["conversions"] = [dict(c) for c in persons["conversions"]]
    return out


def population_counts(con: Any, plan: Plan, run: Any) -> list[dict[str, Any]]:
    """Persons per group in the run's valid roster: in the plan's units, eligible (an
    employment row of at least the plan's extent overlapping the plan's periods) and
    analysed (eligible in a unit the panel holds). Empty when the plan has no roster."""
    from utfall import warehouse

    roster = (plan.data.get("cohort") or {}).get("roster_source")
    if not roster or not plan.treated_units:
        return []
    b0, _ = plan.period("baseline")
    _, m1 = plan.period("measurement")
    units = [(u, "treated") for u in plan.treated_units] + [
        (u, "comparison") for u in plan.comparison_units
    ]
    values = ", ".join(f"($u{i}, $g{i})" for i in range(len(units)))
    params: dict[str, Any] = {**run.scope, "source": roster, "b0": b0, "m1": m1}
    params["k"] = plan.min_employment_extent
    for i, (u, g) in enumerate(units):
        params[f"u{i}"], params[f"g{i}"] = u, g
    sql = f"""
        WITH plan_units(unit_id, grp) AS (VALUES {values}),
        r AS (
            SELECT s.person_id, s.unit_id, p.grp,
                   s.employment_extent >= $k
                   AND s.employed_from <= $m1
                   AND coalesce(s.employed_to, $m1) >= $b0 AS eligible
            FROM work.staging_employee_roster s JOIN plan_units p USING (unit_id)
            WHERE s.contract_id = $contract_id AND s.run_id = $run_id AND s.source = $source
        ),
        analysed_units AS (
            SELECT DISTINCT unit_id FROM work.outcome_panel
            WHERE contract_id = $contract_id AND run_id = $run_id
        )
        SELECT grp AS "group",
               count(DISTINCT person_id) AS in_roster,
               count(DISTINCT person_id) FILTER (WHERE eligible) AS eligible,
               count(DISTINCT person_id) FILTER (
                   WHERE eligible AND unit_id IN (SELECT unit_id FROM analysed_units)
               ) AS analysed
        FROM r GROUP BY grp ORDER BY grp DESC
    """
    return warehouse.read_table(con, sql, params).to_dicts()


def deviations(
    plan: Plan,
    notes: Mapping[str, Any],
    cohort_rows: list[dict[str, Any]],
    quality_rows: list[dict[str, Any]],
    effects: list[dict[str, Any]],
) -> list[dict[str, str]]:
    """What differs from the plan as agreed, and why. Empty when nothing does."""
    out: list[dict[str, str]] = []
    contract = plan.data["contract"]
    m0, _ = plan.period("measurement")
    agreed = contract.get("agreed_on")
    if agreed is None:
        out.append(
            {
                "kind": "plan",
                "what": "the plan states no agreement date (contract.agreed_on)",
                "why": "a validator cannot confirm from the plan that it was fixed before the "
                "measurement began",
            }
        )
    elif dt.date.fromisoformat(agreed) > m0:
        out.append(
            {
                "kind": "plan",
                "what": f"the plan was agreed on {agreed}, after the measurement began ({m0})",
                "why": "terms agreed after outcome data could be seen may have been chosen "
                "with hindsight",
            }
        )
    for c in cohort_rows:
        if c["status"] == "missing":
            out.append(
                {
                    "kind": "unit missing",
                    "what": f"{c['group']} unit {c['unit_id']} does not occur in the roster"
                    + (f" ({c['note']})" if c["note"] else ""),
                    "why": "the plan allows it (cohort.unit_check: warn); the unit is left "
                    "out of the analysis",
                }
            )
    unnamed = [c["unit_id"] for c in cohort_rows if c["status"] == "not_in_plan"]
    if unnamed:
        out.append(
            {
                "kind": "units not in plan",
                "what": "roster units the plan does not name: " + ", ".join(unnamed),
                "why": "not in the cohort; their employees are not analysed",
            }
        )
    for e in effects:
        excluded = e["diagnostics"].get("excluded_units") or []
        if excluded:
            names = ", ".join(
                str(x.get("unit_id", x)) if isinstance(x, dict) else str(x) for x in excluded
            )
            out.append(
                {
                    "kind": "units excluded",
                    "what": f"{e['outcome']}: {len(excluded)} unit(s) excluded by the "
                    f"method: {names}",
                    "why": "the method needs data in both periods for every unit",
                }
            )
    for q in quality_rows:
        if not q["success"]:
            out.append(
                {
                    "kind": "data quality",
                    "what": f"{q['source']}: expectation {q['expectation']} not met: "
                    f"{q['observed']}",
                    "why": f"its severity is {q['severity']}: the plan lets the measurement go on",
                }
            )
    for change in notes.get("delivery_changes") or []:
        out.append({"kind": "re-delivery", "what": change, "why": "a file was delivered again"})
    if notes.get("key_change"):
        out.append(
            {
                "kind": "pseudonymisation key",
                "what": notes["key_change"],
                "why": "the key was replaced",
            }
        )
    return out


def method_section(plan: Plan) -> dict[str, Any]:
    """The plan's method in plain words, from the registry and METHOD_TEXT."""
    from utfall.estimators import get
    from utfall.estimators.base import DATA_SHAPES

    cf = plan.counterfactual
    est = get(cf["method"])
    text = METHOD_TEXT.get(est.name)
    given = cf.get("parameters") or {}
    params = {n: given.get(n, spec.default) for n, spec in est.parameters.items()}
    return {
        "name": est.name,
        "description": est.description,
        "estimand": est.estimand,
        "data": DATA_SHAPES[est.data],
        "confidence": cf["confidence"],
        "seed": cf["seed"],
        "parameters": [
            {
                "name": name,
                "value": params.get(name),
                "description": spec.description,
            }
            for name, spec in sorted(est.parameters.items())
        ],
        "plain": text["plain"]
        if text
        else f"{est.description} (estimand {est.estimand}). No plain-language summary has "
        f"been written for this method; its formulas are in utfall/estimators.",
        "assumptions": list(text["assumptions"]) if text else [],
        "limitations": (list(text["limitations"]) if text else []) + GENERAL_LIMITATIONS,
    }


def payment_steps(payment: Mapping[str, Any], effect: Mapping[str, Any] | None) -> list[str]:
    """The payment as a validator recomputes it, one sentence per step."""
    steps = []
    if effect is not None and effect.get("relative_estimate") is not None:
        steps.append(
            f"Measured effect on {effect['outcome']}: {effect['relative_estimate']:+.4f} "
            f"relative to the counterfactual ({round(effect['confidence'] * 100)} % interval "
            f"{effect['relative_ci_low']:+.4f} to {effect['relative_ci_high']:+.4f})."
        )
    elif effect is not None:
        steps.append(
            f"Measured effect on {effect['outcome']}: {effect['estimate']:+.4f} in its unit "
            f"({round(effect['confidence'] * 100)} % interval {effect['ci_low']:+.4f} to "
            f"{effect['ci_high']:+.4f}); it has no relative effect."
        )
    if (
        effect is not None
        and effect.get("relative_estimate") is not None
        and _reads_absolute(payment)
    ):
        steps.append(
            f"Effect in outcome units on {effect['outcome']}: {effect['estimate']:+.4f} per "
            f"person against the counterfactual ({round(effect['confidence'] * 100)} % interval "
            f"{effect['ci_low']:+.4f} to {effect['ci_high']:+.4f}); the rules that pay on it "
            "read it in the desired direction, rounded to 0.0001."
        )
    if payment.get("measured_improvement") is not None:
        steps.append(
            f"Improvement in the desired direction, rounded to 0.0001: "
            f"{payment['measured_improvement']} on the basis "
            f"{str(payment.get('basis', '')).replace('_', ' ')}."
        )
    decision = payment.get("decision") or {}
    if decision.get("reason"):
        steps.append(f"Basis: {decision['reason']}.")
    for line in payment["lines"]:
        how = f"{line['explanation']}; " if line.get("explanation") else ""
        times = (
            f"{line['achievement']} x {line['max_amount']} = "
            if line.get("achievement") is not None
            else ""
        )
        amount = line["amount"]
        if "cumulative_due" in line:  # a payment period: the rule's share is cumulative
            amount = f"{line['cumulative_due']} cumulative, {line['amount']} this period"
        steps.append(
            f"Rule {line['rule']} ({line['kind']}, {line.get('description', '')}): "
            f"{how}{times}{amount} {payment['currency']}."
        )
    steps += period_steps(payment)
    steps.append(
        "Total: "
        + " + ".join(str(line["amount"]) for line in payment["lines"])
        + f" = {payment['total']} {payment['currency']} (at most {payment['maximum']})."
    )
    return steps


def _reads_absolute(payment: Mapping[str, Any]) -> bool:
    """Whether a line's rule pays on the effect in outcome units (e.g. share_of_savings)."""
    from utfall.payments.base import registry

    return any(
        "effect_absolute" in registry()[line["kind"]].reads
        for line in payment["lines"]
        if line["kind"] in registry()
    )


def period_steps(payment: Mapping[str, Any]) -> list[str]:
    """With payment periods: the period, its data's end, and what was paid before (from
    which approval); nothing for a plan without periods."""
    period = payment.get("period")
    if not period:
        return []
    cur = payment["currency"]
    steps = [
        f"Payment period {period['name']} ({period['kind']}): measured on the data up to "
        f"{period['through']}; each rule pays its cumulative amount due to then less what the "
        "earlier periods paid"
        + (
            " (a negative difference is paid back)."
            if payment.get("clawback")
            else " (never less than 0: the plan does not claw back)."
        )
    ]
    for e in payment.get("earlier", []):
        amounts = ", ".join(f"rule {x['rule']} {x['amount']}" for x in e["lines"])
        if e["approved"]:
            steps.append(
                f"Paid in period {e['period']['name']}: {amounts} {cur} (approved package "
                f"version {e['version']}, {e['reference']})."
            )
        else:
            steps.append(
                f"PROVISIONAL: period {e['period']['name']} is not approved; it counts as paid "
                "nothing, and this proposal cannot be approved."
            )
    steps.append(
        f"Cumulative due {payment['cumulative_due']} - paid before {payment['paid_before']} {cur}."
    )
    for line in payment["lines"]:
        if line.get("overpaid"):
            steps.append(
                f"Rule {line['rule']}: the earlier periods paid {line['overpaid']} {cur} more "
                "than is now due; it is not paid back (overpaid)."
            )
    return steps


def decision_section(decision: Mapping[str, Any] | None) -> dict[str, Any]:
    """The validator's decision (decision.json beside the report), or pending."""
    if not decision:
        return {"status": "pending", "details": {}}
    status = decision.get("decision") or decision.get("status") or "recorded"
    return {"status": str(status), "details": {k: v for k, v in sorted(decision.items())}}


def public_payment(payment: dict[str, Any]) -> dict[str, Any]:
    """The proposal as a report may show it: a rate card's per-person claims (pseudonyms)
    stay in the warehouse; the report gets their count by status."""
    lines = []
    for line in payment.get("lines", []):
        line = dict(line)
        claims = line.pop("claims", None)
        if claims is not None:
            counts: dict[str, int] = {}
            for c in claims:
                counts[c["status"]] = counts.get(c["status"], 0) + 1
            line["claims_by_status"] = dict(sorted(counts.items()))
        lines.append(line)
    return {**payment, "lines": lines}


def build_report(
    plan: Plan,
    inputs: list[dict[str, Any]],
    reconciliation: list[dict[str, Any]],
    panel: pl.DataFrame,
    effects: list[dict[str, Any]],
    payment: dict[str, Any],
    *,
    notes: dict[str, Any] | None = None,
    cohort: list[dict[str, Any]] | None = None,
    quality: list[dict[str, Any]] | None = None,
    population: list[dict[str, Any]] | None = None,
    persons: Mapping[str, Any] | None = None,
    decision: Mapping[str, Any] | None = None,
    report_version: int = 1,
) -> dict[str, Any]:
    """The content of report.json: everything a validator needs to trace each number.

    `notes` holds what differs from the contract's published run (changed deliveries, a
    changed key) and the key fingerprint; `cohort` the plan units against the roster;
    `quality` the data-quality expectations; `population` persons per group in the roster,
    eligible and analysed (:func:`population_counts`); `persons` the person-data outcomes'
    flows and the lab conversions (recompute.persons); `decision` a validator's decision
    (decision.json). Nothing here may name the run itself, so a re-run with the same inputs
    gives the same bytes (the run id and time are in the manifest).
    """
    notes = notes or {}
    k_min = plan.min_cell_size
    cohort_rows = [
        {
            "unit_id": c["unit_id"],
            "group": c["group"],
            "status": c["status"],
            "employees": c["employees"] if c["employees"] >= k_min else None,
            "note": c["note"],
        }
        for c in (cohort or [])
        if c["status"] != "present"
    ]
    quality_rows = [
        {k: q[k] for k in ("source", "expectation", "severity", "success", "observed")}
        for q in (quality or [])
    ]
    public = [public_effect(e) for e in effects]
    devs = deviations(plan, notes, cohort_rows, quality_rows, public)
    warnings = [d["what"] for d in devs if d["kind"] != "plan"]
    for e in public:
        for w in e["warnings"]:
            warnings.append(f"effect on {e['outcome']} ({e['method']}): {w}")
    outcomes = []
    for o in plan.outcomes:
        series = outcome_series(plan, panel, o["id"])
        outcomes.append(
            {
                "id": o["id"],
                "metric": o["metric"],
                "unit": o["unit"],
                "desired_direction": o["desired_direction"],
                "parameters": plan.outcome_parameters(o["id"]),  # defaults filled in
                "series": series,
                "counterfactual_series": counterfactual_series(series),
                "unit_results": unit_results(plan, panel, o["id"]),
            }
        )
    b0, b1 = plan.period("baseline")
    m0, m1 = plan.period("measurement")
    contract = plan.data["contract"]
    pay_effect = next((e for e in public if e["outcome"] == payment.get("outcome")), None)
    suppressed = sum(1 for o in outcomes for r in o["series"] if r["suppressed"])
    suppressed_units = sum(
        1 for o in outcomes for r in o["unit_results"]["rows"] if r["suppressed"]
    )
    return {
        "report_format": REPORT_FORMAT,
        "report_version": report_version,
        "code_version": utfall.__version__,
        "code": {"version": utfall.__version__, "git_commit": git_commit()},
        "contract": {
            "id": plan.contract_id,
            "title": contract["title"],
            "instrument": contract["instrument"],
            "description": contract.get("description"),
            "agreed_on": contract.get("agreed_on"),
            "agreement_text": contract.get("agreement_text"),
            "parties": plan.data["parties"],
        },
        "plan": {
            "file": plan.path.name,
            "hash": plan.hash,
            "hash_method": HASH_METHOD,
            "reproduce": f"utfall plan show {plan.path.name}",
        },
        "report_hash_method": REPORT_HASH_METHOD,
        "periods": {
            "baseline": {"start": b0.isoformat(), "end": b1.isoformat()},
            "measurement": {"start": m0.isoformat(), "end": m1.isoformat()},
            "frequency": plan.data["periods"]["frequency"],
        },
        "cohort": {
            "treated_units": plan.treated_units,
            "comparison_units": plan.comparison_units,
            "min_employment_extent": plan.min_employment_extent,
        },
        "counterfactual": plan.counterfactual,
        "method": method_section(plan),
        "inputs": inputs,
        "key_fingerprint": notes.get("key_fingerprint"),
        "warnings": warnings,
        "deviations": devs,
        "population": population_flow(reconciliation, population, k_min, persons),
        "cohort_units": cohort_rows,
        "data_quality": quality_rows,
        "reconciliation": reconciliation,
        "outcomes": outcomes,
        "effects": public,
        "payment": {**public_payment(payment), "steps": payment_steps(payment, pay_effect)},
        "decision": decision_section(decision),
        "disclosure": {
            "min_cell_size": k_min,
            "suppressed_cells": suppressed,
            "suppressed_units": suppressed_units,
        },
    }


# --- files ------------------------------------------------------------------------------


def dumps(data: Any) -> str:
    """Stable JSON text: sorted keys, fixed indentation, UTF-8, trailing newline."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def report_hash(report: Mapping[str, Any]) -> str:
    """sha256 of report.json's bytes as written (see the module docstring)."""
    return "sha256:" + hashlib.sha256(dumps(report).encode("utf-8")).hexdigest()


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            check=True,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_report(
    report: dict[str, Any], out_dir: Path, run_id: str | None = None
) -> dict[str, Path]:
    """Write report.json, report.html, report.pdf (when Chromium is found) and
    manifest.json into `out_dir`; return their paths (report.pdf only if written).

    Files are written to temporary names and renamed, so a crash never leaves a half
    report beside a manifest that vouches for it. The manifest's ``pdf`` entry says whether
    the PDF was written, and why not.
    """
    from utfall import pdf

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in ("report.json", "report.html", "manifest.json")}
    decision_file = out_dir / "decision.json"
    decision = (
        json.loads(decision_file.read_text(encoding="utf-8")) if decision_file.exists() else None
    )
    contents = {
        "report.json": dumps(report),
        "report.html": render_html(report, decision=decision),
    }
    for name, text in contents.items():
        tmp = paths[name].with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(paths[name])
    generated_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    commit = git_commit()
    run = {"run_id": run_id, "generated_at": generated_at, "git_commit": commit}
    pdf_note = pdf.write_pdf(
        lambda: render_html(report, decision=decision, run=run), out_dir / "report.pdf"
    )
    manifest = {
        "generated_at": generated_at,
        "run_id": run_id,
        "code_version": utfall.__version__,
        "git_commit": commit,
        "plan_hash": report["plan"]["hash"],
        "report_hash": "sha256:" + hashlib.sha256(contents["report.json"].encode()).hexdigest(),
        "inputs": [{"file": i["file"], "sha256": i["sha256"]} for i in report["inputs"]],
        "files": {name: sha256_file(paths[name]) for name in contents},
        "pdf": pdf_note,
    }
    tmp = paths["manifest.json"].with_suffix(".tmp")
    tmp.write_text(dumps(manifest), encoding="utf-8")
    tmp.replace(paths["manifest.json"])
    if pdf_note["written"]:
        paths["report.pdf"] = out_dir / "report.pdf"
    return paths


# --- HTML -------------------------------------------------------------------------------


def _num(x: Any, d: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}".replace(",", "\u202f")
    if isinstance(x, float):
        return f"{x:,.{d}f}".replace(",", "\u202f")
    return str(x)


def _cell(x: Any) -> str:
    """A diagnostic value as text: numbers to 4 significant decimals, None as a dash."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.4g}" if abs(x) < 1e-3 or abs(x) >= 1e5 else f"{x:.4f}"
    if isinstance(x, list) and all(not isinstance(v, (dict, list)) for v in x):
        return ", ".join(_cell(v) for v in x)
    return str(x)


def coefficient_lists(diagnostics: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every list of per-period coefficients among the diagnostics (any method, found by
    shape: dicts with period_start and estimate), by dotted path; they get a chart."""
    found: dict[str, list[dict[str, Any]]] = {}

    def walk(v: Any, path: str) -> None:
        if isinstance(v, dict):
            for k, sub in v.items():
                walk(sub, f"{path}.{k}" if path else k)
        elif (
            isinstance(v, list)
            and v
            and all(isinstance(r, dict) and {"period_start", "estimate"} <= set(r) for r in v)
        ):
            found[path] = v

    walk(dict(diagnostics), "")
    return found


@functools.cache
def _environment() -> Any:
    """The report's Jinja environment, built once per process: compiling the templates costs
    about 0.3 s, and every run renders report.html (and the PDF's HTML) again."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["num"] = lambda x, d=3: _num(float(x) if isinstance(x, int) else x, d)
    env.filters["count"] = _num
    env.filters["columns"] = lambda rows: list(dict.fromkeys(k for row in rows for k in row))
    env.filters["cell"] = _cell
    env.filters["money"] = lambda s: f"{Decimal(s):,}".replace(",", "\u202f")
    env.filters["pct"] = lambda x, d=1: "–" if x is None else f"{100 * x:.{d}f} %"
    env.filters["label"] = lambda s: str(s).replace("_", " ")
    env.tests["mapping"] = lambda v: isinstance(v, dict)
    env.tests["table"] = lambda v: (
        isinstance(v, list) and bool(v) and all(isinstance(r, dict) for r in v)
    )
    return env


def render_html(
    report: Mapping[str, Any],
    decision: Mapping[str, Any] | None = None,
    run: Mapping[str, Any] | None = None,
) -> str:
    """report.html from report.json's content. `decision` (decision.json) replaces the
    report's pending decision; `run` (id, time, commit; only for the PDF) adds the run's
    time to the header, which report.html leaves to the manifest to stay reproducible."""
    report = json.loads(dumps(report))  # as report.json reads back: one rendering for both
    env = _environment()
    m_start = report["periods"]["measurement"]["start"]
    charts = {o["id"]: svg_chart(o, m_start) for o in report["outcomes"]}
    coef_charts = {
        e["outcome"]: {
            path: svg_coefficients(rows, path)
            for path, rows in coefficient_lists(e["diagnostics"]).items()
        }
        for e in report["effects"]
    }
    shown_decision = decision_section(decision) if decision else report["decision"]
    return env.get_template("report.html.j2").render(
        r=report,
        charts=charts,
        coef_charts=coef_charts,
        report_hash=report_hash(report),
        decision=shown_decision,
        run=run,
    )


def svg_coefficients(coefs_in: list[dict[str, Any]], label: str) -> str:
    """Inline SVG: coefficient per period with its interval, zero line, start of the
    measurement (the first coefficient whose phase is "measurement", if phases are given)."""
    coefs = [c for c in coefs_in if c.get("estimate") is not None]
    if not coefs:
        return ""
    width, height, left, right, top, bottom = 640, 240, 56, 12, 16, 40
    lows = [c["ci_low"] if c.get("ci_low") is not None else c["estimate"] for c in coefs]
    highs = [c["ci_high"] if c.get("ci_high") is not None else c["estimate"] for c in coefs]
    lo, hi = min(min(lows), 0.0), max(max(highs), 0.0)
    pad = (hi - lo) * 0.08 or 1.0
    lo, hi = lo - pad, hi + pad
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + plot_w * (i + 0.5) / len(coefs)

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - lo) / (hi - lo))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'class="chart" role="img" aria-label="{label}: coefficient by period">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#999"/>',
        f'<line x1="{left}" y1="{y(0.0):.1f}" x2="{left + plot_w}" y2="{y(0.0):.1f}" '
        'stroke="#555"/>',
    ]
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        parts.append(
            f'<text x="{left - 6}" y="{y(v) + 4:.1f}" font-size="14" text-anchor="end">'
            f"{v:.3g}</text>"
        )
    first_meas = next((i for i, c in enumerate(coefs) if c.get("phase") == "measurement"), None)
    if first_meas is not None:
        xs = (x(first_meas) + x(first_meas - 1)) / 2 if first_meas else x(0)
        parts.append(
            f'<line x1="{xs:.1f}" y1="{top}" x2="{xs:.1f}" y2="{top + plot_h}" stroke="#555" '
            'stroke-dasharray="2 3"/>'
        )
    for i, c in enumerate(coefs):
        colour = "#b2182b" if c.get("phase") == "measurement" else "#2166ac"
        if c.get("ci_low") is not None and c.get("ci_high") is not None and not c.get("reference"):
            parts.append(
                f'<line x1="{x(i):.1f}" y1="{y(c["ci_low"]):.1f}" x2="{x(i):.1f}" '
                f'y2="{y(c["ci_high"]):.1f}" stroke="{colour}" stroke-width="1.5"/>'
            )
        fill = "#fff" if c.get("reference") else colour
        parts.append(
            f'<circle cx="{x(i):.1f}" cy="{y(c["estimate"]):.1f}" r="3.5" fill="{fill}" '
            f'stroke="{colour}"/>'
        )
        if str(c["period_start"]).endswith("-01-01"):
            parts.append(
                f'<text x="{x(i):.1f}" y="{height - bottom + 16}" font-size="14" '
                f'text-anchor="middle">{str(c["period_start"])[:4]}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def svg_chart(outcome: Mapping[str, Any], intervention_start: str) -> str:
    """Inline SVG: treated, comparison and treated counterfactual per period. The legend
    sits below the plot (never clipped at any width) and the measurement period is shaded
    and labelled, so it stays visible when the chart is scaled down to a phone's width."""
    width, left, right, top, bottom = 640, 56, 12, 16, 40
    legend_h = 44
    plot_h = 220
    height = top + plot_h + bottom + legend_h
    starts = sorted({r["period_start"] for r in outcome["series"]})
    lines = {
        "treated": [
            (r["period_start"], r["value"]) for r in outcome["series"] if r["group"] == "treated"
        ],
        "comparison": [
            (r["period_start"], r["value"]) for r in outcome["series"] if r["group"] == "comparison"
        ],
        "counterfactual": [
            (r["period_start"], r["value"])
            for r in outcome["counterfactual_series"]
            if r["period_start"] >= intervention_start
        ],
    }
    values = [v for pts in lines.values() for _, v in pts if v is not None]
    if not starts or not values:
        return "<p>No data to chart.</p>"
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.1 or abs(hi) * 0.1 or 1.0
    lo, hi = lo - pad, hi + pad
    plot_w = width - left - right

    def x(s: str) -> float:
        i = starts.index(s)
        return left + (plot_w * i / max(1, len(starts) - 1))

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - lo) / (hi - lo))

    style = {
        "treated": ("#b2182b", ""),
        "comparison": ("#2166ac", ""),
        "counterfactual": ("#b2182b", ' stroke-dasharray="6 4"'),
    }
    labels = {
        "treated": "Treated (observed)",
        "comparison": "Comparison (observed)",
        "counterfactual": "Treated counterfactual",
    }
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" class="chart" '
        f'role="img" aria-label="{outcome["id"]} by period">',
    ]
    later = [s for s in starts if s >= intervention_start]
    if later:
        xi = x(later[0])
        parts.append(
            f'<rect x="{xi:.1f}" y="{top}" width="{left + plot_w - xi:.1f}" height="{plot_h}" '
            'fill="#fbeaea"/>'
            f'<text x="{xi + 4:.1f}" y="{top + 16}" font-size="15" fill="#7a1020">'
            "measurement</text>"
        )
    parts.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>'
    )
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        parts.append(
            f'<text x="{left - 6}" y="{y(v) + 4:.1f}" font-size="14" text-anchor="end">'
            f"{v:.3g}</text>"
        )
    for s in starts:
        if s.endswith("-01-01"):
            parts.append(
                f'<text x="{x(s):.1f}" y="{top + plot_h + 16}" font-size="14" '
                f'text-anchor="middle">{s[:4]}</text>'
            )
    for n, (name, pts) in enumerate(lines.items()):
        colour, dash = style[name]
        coords = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in pts if v is not None)
        if coords:
            parts.append(
                f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"'
                f"{dash}/>"
            )
        lx = 8 + n * 212
        ly = top + plot_h + bottom + 10
        parts.append(
            f'<line x1="{lx}" y1="{ly}" x2="{lx + 24}" y2="{ly}" '
            f'stroke="{colour}" stroke-width="2"{dash}/>'
            f'<text x="{lx + 30}" y="{ly + 5}" font-size="14">{labels[name]}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def written_line(paths: Mapping[str, Path]) -> str:
    """The run output's line for the report: the HTML's path and whether report.pdf was
    written (and if not, why, from the manifest)."""
    html = str(paths["report.html"])
    if "report.pdf" in paths:
        return f"{html} (and report.pdf)"
    try:
        manifest = json.loads(Path(paths["manifest.json"]).read_text(encoding="utf-8"))
        reason = (manifest.get("pdf") or {}).get("reason") or "unknown reason"
    except (OSError, ValueError):
        reason = "unknown reason"
    return f"{html} (no report.pdf: {reason})"
