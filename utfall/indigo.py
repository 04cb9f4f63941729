"""Export a validator report to the INDIGO data standard, so that a contract and its
results can join the Government Outcomes Lab's international impact-bond dataset.

Standard: INDIGO data standard **4.1.0** (2023-10-19), project model ``schema/project.json``
of https://github.com/INDIGO-Initiative/indigo-data-standard (read at commit f034d75,
"release: 4.1.0"). Data dictionary: https://indigo-data-standard.readthedocs.io/.

INDIGO stores most values as ``{"value": ...}`` objects (its ``object_with_value_*``
definitions); this export follows that. It fills what one report knows, and nothing it
does not (no INDIGO ids, no organisation records, no USD amounts, no investments):

- ``name``, ``dates.outcomes_contract_signed`` (the plan's ``contract.agreed_on``),
  ``overall_project_finance.maximum_potential_outcome_payment_v2`` (the plan's maximum);
- ``outcome_metrics[]``: one per outcome: ``definition``, ``target_population``,
  ``unit_type_of_targeted_service_users_or_beneficiaries`` ("Individual"),
  ``outcome_metric_target`` (the payment rules' wording, on the paid outcome),
  ``outcome_validation_method`` (from the codelist in its description, see
  :data:`VALIDATION_METHODS`), ``data_source_for_outcome_validation``;
- ``outcome_pricings[]``: for the paid outcome, the currency,
  ``maximum_price_if_all_targets_achieved`` (a decimal string: the standard types it as
  text) and the rules as ``price_description``;
- ``results[]``: one per outcome over the measurement period, ``result_level``
  "Outcome level", ``result_type`` "Final", ``outcomes_achieved`` (effect and interval in
  words), ``number_engaged_in_impact_bond`` (treated persons analysed, if published);
- ``outcome_payments[]``: the payment for the measurement period, ``type`` "Planned" while
  the validator's decision is pending, "Actual" once approved, none if rejected.

The same content is written flat as CSV (``path,value``, one row per field, paths as
``outcome_metrics/0/definition/value``), for spreadsheets.
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from utfall.errors import UserError

STANDARD_VERSION = "4.1.0"

#: ``outcome_metrics[].outcome_validation_method``: "To be selected from" this list (the
#: field's description in project.json 4.1.0).
VALIDATION_METHODS = (
    "Randomised Control Trial",
    "Quasi-experimental study",
    "Historical comparison (e.g. comparison to historical benchmark)",
    "Pre-Post analysis (measurement of outcomes for target individual or cohort before and "
    "after intervention)",
    "Simple ex-post verification",
    "Not available",
)

#: utfall methods (registry names, present and planned) to the INDIGO codelist. A method
#: not listed maps to "Not available", and the export says so in the metric's notes.
METHOD_TO_VALIDATION = {
    "rct": VALIDATION_METHODS[0],
    "difference_in_means": VALIDATION_METHODS[0],
    "randomised_comparison": VALIDATION_METHODS[0],
    "did_2x2": VALIDATION_METHODS[1],
    "did_panel": VALIDATION_METHODS[1],
    "twfe": VALIDATION_METHODS[1],
    "staggered_did": VALIDATION_METHODS[1],
    "psm": VALIDATION_METHODS[1],
    "ipw": VALIDATION_METHODS[1],
    "aipw": VALIDATION_METHODS[1],
    "regression": VALIDATION_METHODS[1],
    "synthetic_control": VALIDATION_METHODS[1],
    "historical_baseline": VALIDATION_METHODS[2],
    "its": VALIDATION_METHODS[3],
}

#: INDIGO's policy_sector codelist is left out: a report does not say which sector a
#: contract serves; a data owner adds it.


class ExportError(UserError):
    """A report folder that cannot be exported (missing or unreadable report.json)."""


def _v(value: Any) -> dict[str, Any]:
    return {"value": value}


def _money(amount: str) -> float:
    """INDIGO amounts are JSON numbers; the decimal string converts exactly at 2 places."""
    return float(Decimal(amount))


def load_report(report_dir: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """report.json (and decision.json, if the validator decided) of a report folder."""
    path = Path(report_dir)
    if not path.is_dir():
        raise ExportError(f"{path}: not a report folder (it does not exist or is a file)")
    report_file = path / "report.json"
    if not report_file.is_file():
        raise ExportError(f"{report_file}: not found; give the folder utfall run wrote")
    try:
        report = json.loads(report_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ExportError(f"{report_file}: not valid JSON ({exc})") from None
    if not isinstance(report, dict) or report.get("report_format") != 2:
        found = report.get("report_format") if isinstance(report, dict) else None
        raise ExportError(
            f"{report_file}: report_format {found!r} is not supported (this utfall reads 2); "
            "re-run the measurement with this version"
        )
    decision = None
    decision_file = path / "decision.json"
    if decision_file.is_file():
        try:
            decision = json.loads(decision_file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ExportError(f"{decision_file}: not valid JSON ({exc})") from None
    return report, decision


def _decision_status(report: dict[str, Any], decision: dict[str, Any] | None) -> str:
    if decision:
        return str(decision.get("decision") or decision.get("status") or "recorded")
    return str((report.get("decision") or {}).get("status", "pending"))


def to_indigo(report: dict[str, Any], decision: dict[str, Any] | None = None) -> dict[str, Any]:
    """The INDIGO project record for one report (see the module docstring)."""
    contract, payment, method = report["contract"], report["payment"], report["method"]
    m = report["periods"]["measurement"]
    period = {"start_date": _v(m["start"]), "end_date": _v(m["end"])}
    currency = payment["currency"]
    validation = METHOD_TO_VALIDATION.get(method["name"], "Not available")
    effects = {e["outcome"]: e for e in report["effects"]}
    treated = next((g for g in report["population"]["groups"] if g["group"] == "treated"), None)
    sources = ", ".join(sorted({i["source"] for i in report["inputs"]})) or "none delivered"
    variable_rules = [line for line in payment["lines"] if line["kind"] != "fixed"]
    status = _decision_status(report, decision)

    metrics, results = [], []
    for o in report["outcomes"]:
        e = effects.get(o["id"])
        metric: dict[str, Any] = {
            "id": o["id"],
            "definition": _v(
                f"{o['metric'].replace('_', ' ')} ({o['unit']}); desired direction: "
                f"{o['desired_direction']}"
            ),
            "target_population": _v(
                f"employees of the treated units ({', '.join(report['cohort']['treated_units'])})"
            ),
            "unit_type_of_targeted_service_users_or_beneficiaries": _v("Individual"),
            "unit_description_of_service_user_or_beneficiaries": _v("employee"),
            "outcome_validation_method": _v(validation),
            "data_source_for_outcome_validation": _v(
                f"administrative data delivered to the validator: {sources}"
            ),
            "notes": f"counterfactual method {method['name']} ({method['description']}); "
            f"plan hash {report['plan']['hash']}",
        }
        if validation == "Not available":
            metric["notes"] += f"; method {method['name']} has no INDIGO validation method"
        if o["id"] == payment["outcome"] and variable_rules:
            metric["outcome_metric_target"] = _v(
                "; ".join(line["description"] for line in variable_rules)
            )
        metrics.append(metric)
        if e is None:
            continue
        pct = round(e["confidence"] * 100)
        result: dict[str, Any] = {
            "outcome_metric_id": _v(o["id"]),
            "result_level": _v("Outcome level"),
            "result_type": _v("Final"),
            "period": period,
            "outcomes_achieved": _v(
                (
                    f"{e['relative_estimate'] * 100:+.1f} % against the counterfactual "
                    f"({pct} % CI {e['relative_ci_low'] * 100:+.1f} % to "
                    f"{e['relative_ci_high'] * 100:+.1f} %); "
                    if e.get("relative_estimate") is not None
                    else ""
                )
                + f"absolute {e['estimate']:+.4f} "
                f"{o['unit']} (observed {e['observed']:.4f}, counterfactual "
                f"{e['counterfactual']:.4f})"
            ),
            "other_description_of_result": _v(
                f"{e['n_treated']} treated and {e['n_comparison']} comparison units, "
                f"method {e['method']}, estimand {e['estimand']}"
            ),
            "notes": f"validated by {contract['parties']['independent_validator']}: {status}",
        }
        if treated and treated.get("analysed") is not None:
            result["number_engaged_in_impact_bond"] = _v(treated["analysed"])
        results.append(result)

    record: dict[str, Any] = {
        "name": _v(contract["title"]),
        "status": "PRIVATE",
        "overall_project_finance": {
            "maximum_potential_outcome_payment_v2": {
                "currency": _v(currency),
                "amount": _v(_money(payment["maximum"])),
            }
        },
        "outcome_metrics": metrics,
        "outcome_pricings": [
            {
                "outcome_metric_id": _v(payment["outcome"]),
                "currency": _v(currency),
                # a string in INDIGO 4.1.0 (object_with_value_string), unlike other amounts
                "maximum_price_if_all_targets_achieved": {"amount": _v(payment["maximum"])},
                "price_description": _v(
                    "; ".join(
                        f"{line['description']} (up to {line['max_amount']} {currency})"
                        for line in payment["lines"]
                    )
                    + f"; paid on the basis {payment['basis'].replace('_', ' ')}"
                ),
            }
        ],
        "results": results,
        "outcome_payments": [],
        "notes": _v(
            f"Exported by utfall from report {report['contract']['id']} (plan "
            f"{report['plan']['hash']}); INDIGO data standard {STANDARD_VERSION}"
        ),
    }
    if contract.get("agreed_on"):
        record["dates"] = {"outcomes_contract_signed": _v(contract["agreed_on"])}
    if status != "rejected":
        record["outcome_payments"].append(
            {
                "outcome_metric_id": _v(payment["outcome"]),
                "period": period,
                "type": _v("Actual" if status == "approved" else "Planned"),
                "money": {"currency": _v(currency), "amount": _v(_money(payment["total"]))},
                "notes": f"validator's decision: {status}",
            }
        )
    return record


def flatten(record: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(path, value) for every leaf, paths joined by "/" with list indexes."""
    if isinstance(record, dict):
        out = []
        for k, v in record.items():
            out += flatten(v, f"{prefix}/{k}" if prefix else k)
        return out
    if isinstance(record, list):
        out = []
        for i, v in enumerate(record):
            out += flatten(v, f"{prefix}/{i}")
        return out
    return [(prefix, record)]


def to_csv(record: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "value"])
    for path, value in flatten(record):
        w.writerow([path, "" if value is None else value])
    return buf.getvalue()


def export(report_dir: Path, out_dir: Path | None = None) -> dict[str, Path]:
    """Write indigo_project.json and indigo_project.csv (default: REPORT_DIR/indigo)."""
    report, decision = load_report(report_dir)
    record = to_indigo(report, decision)
    out = Path(out_dir) if out_dir else Path(report_dir) / "indigo"
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "indigo_project.json": json.dumps(record, indent=2, ensure_ascii=False) + "\n",
        "indigo_project.csv": to_csv(record),
    }
    paths = {}
    for name, text in files.items():
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out / name)
        paths[name] = out / name
    return paths
