"""The validator report: report.json (machine-readable), report.html (readable), manifest.

`report.json` and `report.html` depend only on the inputs, the plan and the code version,
so a re-run gives the same bytes; the run's timestamp and the git commit go into
`manifest.json`, which also lists the sha256 of each report file and of each input, so a
validator can tell that nothing was changed after the run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

import utfall
from utfall.metrics import group_series
from utfall.plan import Plan

REPORT_FORMAT = 1
TEMPLATES = Path(__file__).resolve().parent / "templates"


def _round(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else float(round(x, digits))


def outcome_series(plan: Plan, panel: pl.DataFrame, outcome_id: str) -> list[dict[str, Any]]:
    """Group values per quarter, with cells under the disclosure threshold suppressed."""
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
    """Treated counterfactual per quarter: comparison value + the pooled baseline gap."""
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


#: Diagnostics with per-unit or per-quarter values: kept in `marts.effects`, left out of
#: the report, where they would bypass small-cell suppression.
UNIT_LEVEL_DIAGNOSTICS = ("units", "period_means")


def effect_warnings(effect: dict[str, Any]) -> list[str]:
    """An effect's warnings (`EffectResult.warnings`), then those an estimator put in its
    diagnostics under "warnings" (did_2x2 does), each once."""
    out = list(effect.get("warnings") or [])
    for w in (effect.get("diagnostics") or {}).get("warnings") or []:
        if w not in out:
            out.append(w)
    return out


def public_effect(effect: dict[str, Any]) -> dict[str, Any]:
    """An effect result fit for the report: only the diagnostics its estimator declares
    publishable (the allow-list), and of those the aggregate ones only."""
    from utfall.estimators import publishable

    diagnostics = {k: v for k, v in publishable(effect).items() if k not in UNIT_LEVEL_DIAGNOSTICS}
    return {**effect, "diagnostics": diagnostics, "warnings": effect_warnings(effect)}


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
) -> dict[str, Any]:
    """The content of report.json: everything a validator needs to trace each number.

    `notes` holds what differs from the contract's published run (changed deliveries, a
    changed key) and the key fingerprint; `cohort` the plan units against the roster;
    `quality` the data-quality expectations. Nothing here may name the run itself, so a
    re-run with the same inputs gives the same bytes (the run id is in the manifest).
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
    warnings = list(notes.get("delivery_changes") or [])
    if notes.get("key_change"):
        warnings.append(notes["key_change"])
    for c in cohort_rows:
        if c["status"] == "missing":
            warnings.append(
                f"{c['group']} unit {c['unit_id']} does not occur in the roster"
                + (f" ({c['note']})" if c["note"] else "")
            )
    unnamed = [c["unit_id"] for c in cohort_rows if c["status"] == "not_in_plan"]
    if unnamed:
        warnings.append(
            "roster units the plan does not name (not in the cohort): " + ", ".join(unnamed)
        )
    for q in quality_rows:
        if not q["success"]:
            warnings.append(
                f"data quality, {q['source']}: {q['expectation']} ({q['severity']}): "
                f"{q['observed']}"
            )
    for e in effects:
        for w in effect_warnings(e):
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
            }
        )
    b0, b1 = plan.period("baseline")
    m0, m1 = plan.period("measurement")
    return {
        "report_format": REPORT_FORMAT,
        "code_version": utfall.__version__,
        "contract": {
            "id": plan.contract_id,
            "title": plan.data["contract"]["title"],
            "instrument": plan.data["contract"]["instrument"],
            "parties": plan.data["parties"],
        },
        "plan": {"file": plan.path.name, "hash": plan.hash},
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
        "inputs": inputs,
        "key_fingerprint": notes.get("key_fingerprint"),
        "warnings": warnings,
        "cohort_units": cohort_rows,
        "data_quality": quality_rows,
        "reconciliation": reconciliation,
        "outcomes": outcomes,
        "effects": [public_effect(e) for e in effects],
        "payment": payment,
        "disclosure": {
            "min_cell_size": plan.min_cell_size,
            "suppressed_cells": sum(1 for o in outcomes for r in o["series"] if r["suppressed"]),
        },
    }


def dumps(data: Any) -> str:
    """Stable JSON text: sorted keys, fixed indentation, UTF-8, trailing newline."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


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
    """Write report.json, report.html and manifest.json into `out_dir`; return their paths.

    Files are written to temporary names and renamed, so a crash never leaves a half
    report beside a manifest that vouches for it.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in ("report.json", "report.html", "manifest.json")}
    contents = {"report.json": dumps(report), "report.html": render_html(report)}
    for name, text in contents.items():
        tmp = paths[name].with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(paths[name])
    manifest = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "run_id": run_id,
        "code_version": utfall.__version__,
        "git_commit": git_commit(),
        "plan_hash": report["plan"]["hash"],
        "inputs": [{"file": i["file"], "sha256": i["sha256"]} for i in report["inputs"]],
        "files": {name: sha256_file(paths[name]) for name in contents},
    }
    tmp = paths["manifest.json"].with_suffix(".tmp")
    tmp.write_text(dumps(manifest), encoding="utf-8")
    tmp.replace(paths["manifest.json"])
    return paths


def render_html(report: dict[str, Any]) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["num"] = lambda x, d=3: "–" if x is None else f"{x:,.{d}f}".replace(",", " ")
    env.filters["money"] = lambda s: f"{Decimal(s):,}".replace(",", "\u202f")
    env.filters["pct"] = lambda x, d=1: "–" if x is None else f"{100 * x:.{d}f} %"
    charts = {
        o["id"]: svg_chart(o, report["periods"]["measurement"]["start"]) for o in report["outcomes"]
    }
    event_charts = {
        e["outcome"]: svg_event_study(e["diagnostics"].get("event_study"))
        for e in report["effects"]
    }
    return env.get_template("report.html.j2").render(
        r=report, charts=charts, event_charts=event_charts
    )


def svg_event_study(es: dict[str, Any] | None) -> str:
    """Inline SVG: event-study coefficient per quarter with its interval, zero line, start."""
    coefs = [c for c in (es or {}).get("coefficients", []) if c.get("estimate") is not None]
    if not coefs:
        return ""
    width, height, left, right, top, bottom = 820, 240, 64, 20, 16, 40
    lows = [c["ci_low"] if c["ci_low"] is not None else c["estimate"] for c in coefs]
    highs = [c["ci_high"] if c["ci_high"] is not None else c["estimate"] for c in coefs]
    lo, hi = min(min(lows), 0.0), max(max(highs), 0.0)
    pad = (hi - lo) * 0.08 or 1.0
    lo, hi = lo - pad, hi + pad
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + plot_w * (i + 0.5) / len(coefs)

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - lo) / (hi - lo))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" '
        'aria-label="event study: treated minus comparison by quarter">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#999"/>',
        f'<line x1="{left}" y1="{y(0.0):.1f}" x2="{left + plot_w}" y2="{y(0.0):.1f}" '
        'stroke="#555"/>',
    ]
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        parts.append(
            f'<text x="{left - 6}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end">'
            f"{v:.3g}</text>"
        )
    first_meas = next((i for i, c in enumerate(coefs) if c["phase"] == "measurement"), None)
    if first_meas is not None:
        xs = (x(first_meas) + x(first_meas - 1)) / 2 if first_meas else x(0)
        parts.append(
            f'<line x1="{xs:.1f}" y1="{top}" x2="{xs:.1f}" y2="{top + plot_h}" stroke="#555" '
            'stroke-dasharray="2 3"/>'
        )
    for i, c in enumerate(coefs):
        colour = "#b2182b" if c["phase"] == "measurement" else "#2166ac"
        if c["ci_low"] is not None and c["ci_high"] is not None and not c.get("reference"):
            parts.append(
                f'<line x1="{x(i):.1f}" y1="{y(c["ci_low"]):.1f}" x2="{x(i):.1f}" '
                f'y2="{y(c["ci_high"]):.1f}" stroke="{colour}" stroke-width="1.5"/>'
            )
        fill = "#fff" if c.get("reference") else colour
        parts.append(
            f'<circle cx="{x(i):.1f}" cy="{y(c["estimate"]):.1f}" r="3.5" fill="{fill}" '
            f'stroke="{colour}"/>'
        )
        if c["period_start"].endswith("-01-01"):
            parts.append(
                f'<text x="{x(i):.1f}" y="{height - bottom + 16}" font-size="11" '
                f'text-anchor="middle">{c["period_start"][:4]}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def svg_chart(outcome: dict[str, Any], intervention_start: str) -> str:
    """Inline SVG: treated, comparison and treated counterfactual per quarter."""
    width, height, left, right, top, bottom = 820, 300, 64, 190, 16, 40
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
    plot_w, plot_h = width - left - right, height - top - bottom

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
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{outcome["id"]} by quarter">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#999"/>',
    ]
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        parts.append(
            f'<text x="{left - 6}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end">'
            f"{v:.3g}</text>"
        )
    for s in starts:
        if s.endswith("-01-01"):
            parts.append(
                f'<text x="{x(s):.1f}" y="{height - bottom + 16}" font-size="11" '
                f'text-anchor="middle">{s[:4]}</text>'
            )
    if intervention_start in starts:
        xi = x(intervention_start)
        parts.append(
            f'<line x1="{xi:.1f}" y1="{top}" x2="{xi:.1f}" y2="{top + plot_h}" stroke="#555" '
            'stroke-dasharray="2 3"/>'
        )
    for n, (name, pts) in enumerate(lines.items()):
        colour, dash = style[name]
        coords = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in pts if v is not None)
        if coords:
            parts.append(
                f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"'
                f"{dash}/>"
            )
        ly = top + 14 + 18 * n
        parts.append(
            f'<line x1="{width - right + 10}" y1="{ly}" x2="{width - right + 34}" y2="{ly}" '
            f'stroke="{colour}" stroke-width="2"{dash}/>'
            f'<text x="{width - right + 40}" y="{ly + 4}" font-size="11">{labels[name]}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
