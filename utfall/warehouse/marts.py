"""The analysts' marts: stable, documented views of each contract's published run.

Analysts (DuckDB CLI, Python, BI tools) read schema `marts`. Every view and column there
is described with `COMMENT ON` (the data dictionary, docs/data-dictionary.md, is generated
from these comments), no column has a reserved word for a name (`group` is `arm`), and
no view holds a person's identity number or pseudonym. Outcome cells with fewer employees
than the plan's `disclosure.min_cell_size` are suppressed (their numbers are NULL and
`suppressed` is true), as in the report. Values that would bypass that suppression (the
unsuppressed unit panel, the estimator's per-unit diagnostics) are kept in schema
`restricted`, for the validator.

Every mart row carries `run_id`, `plan_hash` and `inputs_sha256`, which trace it to its
run, its measurement plan and the delivered files: `inputs_sha256` is the sha256 of the
run's files, one `source/file:sha256` line each, sorted and joined with newlines
(`marts.deliveries` lists them), so a reader can recompute it from the files.

`ledger.decisions` (a view of the hash chain's decision entries, see `chain`) holds the
validator's decisions per contract period; `marts.decisions` shows them with their run.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb


@dataclass(frozen=True)
class Relation:
    """A table or view this module creates, with its comment and each column's comment."""

    name: str
    comment: str
    columns: dict[str, str]
    sql: str = ""  # a view's SELECT; empty for a table (then columns hold "type -- comment")

    @property
    def is_view(self) -> bool:
        return bool(self.sql)


# ---- tables ------------------------------------------------------------------------------

#: name -> (column -> (type, comment))
_TABLES: dict[str, tuple[str, dict[str, tuple[str, str]]]] = {
    "ledger.run_plans": (
        "The measurement plan's settings each run measured under (one row per run), "
        "written just before the run is published; the marts take periods, method and the "
        "small-cell threshold from here.",
        {
            "contract_id": ("VARCHAR NOT NULL", "The contract (the plan's contract.id)."),
            "run_id": ("VARCHAR NOT NULL", "The run these settings belong to."),
            "plan_hash": ("VARCHAR NOT NULL", "sha256 of the plan's normalised JSON form."),
            "title": ("VARCHAR", "The contract's title (contract.title)."),
            "instrument": ("VARCHAR", "The kind of outcome contract (contract.instrument)."),
            "baseline_start": ("DATE", "First day of the baseline period."),
            "baseline_end": ("DATE", "Last day of the baseline period."),
            "measurement_start": ("DATE", "First day of the measurement period."),
            "measurement_end": ("DATE", "Last day of the measurement period."),
            "frequency": ("VARCHAR", "Length of one measurement period (e.g. quarterly)."),
            "method": ("VARCHAR", "The counterfactual method (counterfactual.method)."),
            "confidence": ("DOUBLE", "Confidence level of the intervals (e.g. 0.95)."),
            "currency": ("VARCHAR", "Currency of the payment terms."),
            "min_cell_size": (
                "BIGINT",
                "disclosure.min_cell_size: cells with fewer employees are suppressed.",
            ),
        },
    ),
}


#: Comments for the ledger's views of the chain (`layout.LEDGER_VIEWS`).
_LEDGER_VIEW_COMMENTS: dict[str, tuple[str, dict[str, str]]] = {
    "ledger.decisions": (
        "The validator's decisions: the chain's decision entries as columns.",
        {
            "seq": "The chain entry's number.",
            "entry_sha256": "sha256 of the chain entry.",
            "contract_id": "The contract decided on.",
            "recorded_at": "When the entry was appended (UTC, ISO 8601).",
            "run_id": "The published run whose package was decided on.",
            "decided_at": "When the validator decided (UTC, ISO 8601).",
            "period": "The contract period the decision covers (e.g. final).",
            "decision": "approved or rejected.",
            "version": "The report package's version.",
            "report_sha256": "sha256 of the report.json decided on.",
            "signer": "Fingerprint of the validator's Ed25519 public key.",
            "reason": "The validator's stated reason, if any.",
            "reference": "The decision's reference (contract/period/version/hash).",
        },
    ),
    "ledger.payments": (
        "Payments due after an approval: the chain's payment entries as columns.",
        {
            "seq": "The chain entry's number.",
            "entry_sha256": "sha256 of the chain entry.",
            "contract_id": "The contract paid under.",
            "recorded_at": "When the entry was appended (UTC, ISO 8601).",
            "period": "The contract period paid for.",
            "payee": "Who is paid (the plan's provider).",
            "amount": "The amount due, exact to the öre.",
            "currency": "Currency of the amount.",
            "decision_reference": "The approval the payment follows from.",
        },
    ),
}


#: Comments for the ledger tables that `layout` creates: name -> (comment, column -> text).
_LEDGER_COMMENTS: dict[str, tuple[str, dict[str, str]]] = {
    "ledger.chain": (
        "The append-only hash chain of publications, validator decisions and payments: each "
        "entry carries the sha256 of the one before; corrections are new entries. "
        "`utfall ledger verify` checks it; ledger.decisions and ledger.payments show entries.",
        {
            "seq": "The entry's number, from 1, without gaps.",
            "kind": "run (a publication), decision or payment.",
            "contract_id": "The contract the entry is about.",
            "recorded_at": "When the entry was appended (UTC, ISO 8601).",
            "payload_json": "What the entry records, as canonical JSON.",
            "prev_sha256": "sha256 of the previous entry (64 zeros for the first).",
            "sha256": "sha256 of this entry (seq, kind, contract, time, prev_sha256, payload).",
        },
    ),
    "ledger.meta": (
        "Facts about the warehouse file itself (schema_version: the layout it was made by).",
        {"key": "The fact's name.", "value": "Its value."},
    ),
    "ledger.runs": (
        "Every run of every contract: entered when it starts, updated as it goes; marts.runs "
        "shows it for analysts.",
        {
            "run_id": "The run's id (time-ordered).",
            "contract_id": "The contract measured.",
            "plan_hash": "sha256 of the plan's normalised JSON form.",
            "plan_file": "File name of the plan.",
            "key_fingerprint": "Fingerprint of the pseudonymisation key (not the key).",
            "code_version": "utfall version that ran it.",
            "origin": "What started it: cli or dagster.",
            "started_at": "When it started (UTC).",
            "finished_at": "When it was published, failed or rejected (UTC).",
            "status": "running, published, superseded, failed, rejected or abandoned.",
            "stage": "The stage it reached.",
            "error": "Why it failed or was rejected (file, line, rule; never delivered values).",
            "timings_json": "Wall and CPU seconds per stage, as JSON.",
        },
    ),
    "ledger.published": (
        "Per contract, the run readers see; every published view filters on it.",
        {
            "contract_id": "The contract.",
            "run_id": "Its published run.",
            "plan_hash": "The plan hash the run was published under.",
            "published_at": "When it was published (UTC).",
        },
    ),
    "ledger.profiles": (
        "Rows per month of each run's valid data, kept for good: the history a later "
        "delivery's volume is compared with.",
        {
            "contract_id": "The contract.",
            "run_id": "The run whose data were counted.",
            "source": "The plan's source name.",
            "month": "First day of the month.",
            "rows": "Valid rows in that month.",
        },
    ),
    "ledger.deliveries": (
        "Every delivered file ever received, with its sha256 and fate; marts.deliveries "
        "shows it for analysts.",
        {
            "contract_id": "The contract.",
            "run_id": "The run that read the file.",
            "source": "The plan's source name.",
            "file": "File name, relative to the contract's delivery folder.",
            "sha256": "sha256 of the file's bytes.",
            "bytes": "File size in bytes.",
            "rows": "Data rows in the file.",
            "received_at": "When the run read it (UTC).",
            "status": "received, accepted, superseded or rejected.",
        },
    ),
}


# ---- views -------------------------------------------------------------------------------

_TRACE = {
    "contract_id": "The contract (the plan's contract.id); filter on it.",
    "run_id": "The published run this row comes from (marts.runs).",
    "plan_hash": "sha256 of the measurement plan the run measured under.",
    "inputs_sha256": (
        "sha256 of the run's delivered files: one 'source/file:sha256' line per file, "
        "sorted, joined with newlines (see marts.deliveries)."
    ),
}

# Joins that give a published run's trace columns; `t` is the work table.
_PUBLISHED = (
    "JOIN ledger.published p ON p.contract_id = t.contract_id AND p.run_id = t.run_id "
    "LEFT JOIN ledger.run_inputs i ON i.contract_id = t.contract_id AND i.run_id = t.run_id"
)
_TRACE_SQL = "t.contract_id, t.run_id, p.plan_hash, i.inputs_sha256"

# The plan's threshold; no recorded threshold suppresses everything (nothing leaks).
_SUPPRESS = "(k.min_cell_size IS NULL OR {n} < k.min_cell_size)"
_THRESHOLD = "LEFT JOIN ledger.run_plans k ON k.contract_id = t.contract_id AND k.run_id = t.run_id"

_OUTCOME_COLS = {
    "outcome": "The plan's outcome id (outcomes[].id).",
    "period_start": "First day of the period (a quarter).",
    "period_end": "Last day of the period.",
    "phase": "baseline or measurement.",
    "arm": "treated or comparison (the unit's group in the plan).",
}
_CELL_COLS = {
    "employees": "Distinct employees with an eligible row in the cell; NULL when suppressed.",
    "numerator": (
        "The metric's numerator (e.g. weighted short-term sick days); NULL when suppressed."
    ),
    "denominator": (
        "The metric's denominator (e.g. headcount in person-time); NULL when suppressed."
    ),
    "value": "numerator / denominator, the outcome's value; NULL when suppressed.",
    "suppressed": (
        "True when the cell has fewer employees than the plan's disclosure.min_cell_size."
    ),
}

_EFFECT_COLS = {
    "outcome": "The plan's outcome id.",
    "method": "The counterfactual method that estimated the effect.",
    "estimate": "The effect on the outcome's scale (treated minus counterfactual).",
    "std_error": "Standard error of the estimate.",
    "ci_low": "Lower end of the confidence interval of the estimate.",
    "ci_high": "Upper end of the confidence interval of the estimate.",
    "confidence": "Confidence level of the interval (e.g. 0.95).",
    "relative_estimate": "The effect relative to the counterfactual level (-0.12 = 12 % fewer).",
    "n_treated": "Treated units in the estimate.",
    "n_comparison": "Comparison units in the estimate.",
}

_PAYMENT_COLS = {
    "rule": "The payment rule's position in the plan (payment.rules, from 0).",
    "kind": "The rule's kind (fixed, linear_to_target, ...).",
    "description": "The rule's description from the plan.",
    "achievement": "Share of the rule's amount earned (0..1).",
    "max_amount": "The rule's full amount.",
    "amount": "The amount proposed under this rule (exact decimal).",
    "currency": "Currency of the amounts.",
    "status": "proposed until the validator approves a payment.",
}


def _views() -> list[Relation]:
    panel_group = (
        'SELECT t.contract_id, t.run_id, t.outcome, t."group" AS arm, t.period_start, '
        "t.period_end, t.phase, count(*) AS units, sum(t.employees) AS employees, "
        "sum(t.numerator) AS numerator, sum(t.denominator) AS denominator "
        "FROM work.outcome_panel t GROUP BY ALL"
    )
    cell = (
        "CASE WHEN {s} THEN NULL ELSE t.employees END AS employees, "
        "CASE WHEN {s} THEN NULL ELSE t.numerator END AS numerator, "
        "CASE WHEN {s} THEN NULL ELSE t.denominator END AS denominator, "
        "CASE WHEN {s} THEN NULL ELSE t.numerator / NULLIF(t.denominator, 0) END AS value, "
        "{s} AS suppressed"
    ).format(s=_SUPPRESS.format(n="t.employees"))
    return [
        Relation(
            "ledger.run_inputs",
            "Per run: how many files it read and the sha256 over them (inputs_sha256).",
            {
                "contract_id": "The contract.",
                "run_id": "The run.",
                "files": "Number of delivered files the run read.",
                "inputs_sha256": _TRACE["inputs_sha256"],
            },
            "SELECT contract_id, run_id, count(*) AS files, sha256(string_agg("
            "source || '/' || file || ':' || sha256, chr(10) ORDER BY source, file, sha256)) "
            "AS inputs_sha256 FROM ledger.deliveries GROUP BY contract_id, run_id",
        ),
        Relation(
            "marts.contracts",
            "One row per contract with a published run: what it measures, its periods and "
            "the run readers see.",
            {
                "contract_id": _TRACE["contract_id"],
                "title": "The contract's title.",
                "instrument": "The kind of outcome contract.",
                "run_id": "The published run (the one every other mart shows).",
                "plan_hash": _TRACE["plan_hash"],
                "inputs_sha256": _TRACE["inputs_sha256"],
                "published_at": "When the run was published (UTC).",
                "baseline_start": "First day of the baseline period.",
                "baseline_end": "Last day of the baseline period.",
                "measurement_start": "First day of the measurement period.",
                "measurement_end": "Last day of the measurement period.",
                "frequency": "Length of one period (quarterly).",
                "method": "The counterfactual method.",
                "confidence": "Confidence level of the intervals.",
                "currency": "Currency of the payment terms.",
                "min_cell_size": "Cells with fewer employees than this are suppressed.",
                "input_files": "Number of delivered files the run read.",
                "code_version": "utfall version that computed the run.",
            },
            "SELECT p.contract_id, k.title, k.instrument, p.run_id, p.plan_hash, "
            "i.inputs_sha256, p.published_at, k.baseline_start, k.baseline_end, "
            "k.measurement_start, k.measurement_end, k.frequency, k.method, k.confidence, "
            "k.currency, k.min_cell_size, i.files AS input_files, r.code_version "
            "FROM ledger.published p "
            "LEFT JOIN ledger.run_plans k ON k.contract_id = p.contract_id AND k.run_id = p.run_id "
            "LEFT JOIN ledger.run_inputs i ON i.contract_id = p.contract_id "
            "AND i.run_id = p.run_id "
            "LEFT JOIN ledger.runs r ON r.run_id = p.run_id",
        ),
        Relation(
            "marts.runs",
            "Every run of every contract, whatever became of it: status, stage reached, "
            "times, error.",
            {
                "run_id": "The run's id (time-ordered).",
                "contract_id": _TRACE["contract_id"],
                "plan_hash": _TRACE["plan_hash"],
                "inputs_sha256": _TRACE["inputs_sha256"],
                "plan_file": "File name of the plan the run measured under.",
                "code_version": "utfall version that ran it.",
                "origin": "What started it: cli or dagster.",
                "started_at": "When the run started (UTC).",
                "finished_at": "When it was published, failed or rejected (UTC).",
                "seconds": "finished_at minus started_at, in seconds.",
                "status": (
                    "running, published, superseded (an earlier publication), failed, "
                    "rejected (a delivery refused) or abandoned (the next run started)."
                ),
                "stage": "The last stage the run reached.",
                "error": "Why it failed or was rejected (names file, line, rule; no values).",
                "is_published": "True for the run readers see now.",
                "key_fingerprint": (
                    "Fingerprint of the pseudonymisation key (not the key): runs with "
                    "different fingerprints have incomparable pseudonyms."
                ),
            },
            "SELECT r.run_id, r.contract_id, r.plan_hash, i.inputs_sha256, r.plan_file, "
            "r.code_version, r.origin, r.started_at, r.finished_at, "
            "epoch(r.finished_at - r.started_at) AS seconds, r.status, r.stage, r.error, "
            "EXISTS (SELECT 1 FROM ledger.published p WHERE p.run_id = r.run_id) "
            "AS is_published, r.key_fingerprint "
            "FROM ledger.runs r LEFT JOIN ledger.run_inputs i "
            "ON i.contract_id = r.contract_id AND i.run_id = r.run_id",
        ),
        Relation(
            "marts.deliveries",
            "Every delivered file ever received, with its sha256 and fate.",
            {
                "contract_id": _TRACE["contract_id"],
                "run_id": "The run that read the file.",
                "source": "The plan's source name (sources[].name).",
                "file": "File name, relative to the contract's delivery folder.",
                "sha256": "sha256 of the file's bytes.",
                "bytes": "File size in bytes.",
                "rows": "Data rows in the file.",
                "received_at": "When the run read it (UTC).",
                "status": (
                    "received (run in progress), accepted (its run is published), "
                    "superseded (a later run was published) or rejected (its run failed)."
                ),
            },
            "SELECT contract_id, run_id, source, file, sha256, bytes, rows, received_at, "
            "status FROM ledger.deliveries",
        ),
        Relation(
            "marts.reconciliation",
            "Per source of the published run: rows delivered = rows loaded + rows quarantined.",
            {
                **_TRACE,
                "source": "The plan's source name.",
                "delivered": "Data rows delivered in the source's files.",
                "loaded": "Rows that passed validation (staging).",
                "quarantined": "Rows that broke a rule (quarantine.rows, restricted).",
            },
            f"SELECT {_TRACE_SQL}, t.source, t.delivered, t.loaded, t.quarantined "
            f"FROM work.reconciliation t {_PUBLISHED}",
        ),
        Relation(
            "marts.data_quality",
            "Each data-quality expectation (Great Expectations) per source of the published "
            "run: severity, whether it was met, what was observed.",
            {
                **_TRACE,
                "source": "The plan's source name.",
                "expectation": "The expectation (e.g. volume_vs_history, units_present).",
                "severity": "block (a failure stops the run), warn or off.",
                "success": "True when the expectation was met.",
                "observed": "What was observed, in words.",
                "details_json": "The expectation's details as JSON (counts, thresholds).",
            },
            f"SELECT {_TRACE_SQL}, t.source, t.expectation, t.severity, t.success, "
            f"t.observed, t.details_json FROM work.quality_results t {_PUBLISHED}",
        ),
        Relation(
            "marts.cohort_units",
            "The plan's units against the roster of the published run: present, missing, or "
            "in the roster but not in the plan.",
            {
                **_TRACE,
                "unit_id": "The organisational unit (not a person).",
                "arm": "treated or comparison; NULL for a roster unit not in the plan.",
                "status": "present, missing or not_in_plan.",
                "employees": "Employees of the unit with an eligible roster row.",
                "note": "What the status means for the measurement.",
            },
            f'SELECT {_TRACE_SQL}, t.unit_id, t."group" AS arm, t.status, t.employees, '
            f"t.note FROM work.cohort_units t {_PUBLISHED}",
        ),
        Relation(
            "marts.outcomes_by_period",
            "Each outcome per period and arm (treated, comparison) of the published run, "
            "pooled over the arm's units as in the report; small cells suppressed.",
            {
                **_TRACE,
                **_OUTCOME_COLS,
                "units": "Units of the arm with a row in the period.",
                **_CELL_COLS,
                "value": (
                    "Pooled value: sum of numerators / sum of denominators over the arm's "
                    "units (the report's series); NULL when suppressed."
                ),
            },
            "SELECT t.contract_id, t.run_id, p.plan_hash, i.inputs_sha256, t.outcome, "
            "t.period_start, t.period_end, t.phase, t.arm, t.units, "
            f"{cell} FROM ({panel_group}) t {_PUBLISHED} {_THRESHOLD}",
        ),
        Relation(
            "marts.outcomes_by_unit",
            "Each outcome per unit and period of the published run; cells with fewer "
            "employees than the plan's threshold are suppressed.",
            {
                **_TRACE,
                **_OUTCOME_COLS,
                "unit_id": "The organisational unit (not a person).",
                **_CELL_COLS,
            },
            "SELECT t.contract_id, t.run_id, p.plan_hash, i.inputs_sha256, t.outcome, "
            't.period_start, t.period_end, t.phase, t."group" AS arm, t.unit_id, '
            f"{cell} FROM work.outcome_panel t {_PUBLISHED} {_THRESHOLD}",
        ),
        Relation(
            "marts.effects",
            "One effect estimate per outcome of the published run, with its interval "
            "(per-unit diagnostics are in restricted.effects).",
            {
                **_TRACE,
                **_EFFECT_COLS,
                "relative_ci_low": "Lower end of the interval of the relative effect.",
                "relative_ci_high": "Upper end of the interval of the relative effect.",
            },
            f"SELECT {_TRACE_SQL}, t.outcome, t.method, t.estimate, t.std_error, t.ci_low, "
            "t.ci_high, t.confidence, t.relative_estimate, t.n_treated, t.n_comparison, "
            "TRY_CAST(json_extract(t.result_json, '$.relative_ci_low') AS DOUBLE) "
            "AS relative_ci_low, "
            "TRY_CAST(json_extract(t.result_json, '$.relative_ci_high') AS DOUBLE) "
            "AS relative_ci_high "
            f"FROM work.effects t {_PUBLISHED}",
        ),
        Relation(
            "marts.person_flow",
            "For each person-data outcome of the published run (e.g. HbA1c at 12 months), "
            "per arm: persons enrolled, excluded as not eligible (per criterion of the plan's "
            "eligibility), eligible, dropped (no outcome, a covariate missing) and analysed, "
            "as in the report's population flow; small cells suppressed.",
            {
                **_TRACE,
                "outcome": "The plan's outcome id (outcomes[].id).",
                "arm": "treated or comparison.",
                "seq": "Order of the steps within the outcome and arm.",
                "step": "enrolled, excluded, eligible, dropped or analysed.",
                "reason": "excluded: not_eligible; dropped: no_outcome or missing_covariate.",
                "variable": "The eligibility criterion's or the missing covariate's column.",
                "persons": "Persons at the step; NULL when suppressed.",
                "suppressed": "True when hidden as in the report: 0 < persons < the plan's "
                "disclosure.min_cell_size, or hidden too so that a small count cannot be "
                "worked out by subtraction (enrolled = eligible + excluded, eligible = "
                "analysed + dropped).",
            },
            f"SELECT {_TRACE_SQL}, t.outcome, t.arm, t.seq, t.step, t.reason, t.variable, "
            "CASE WHEN t.suppressed THEN NULL ELSE t.persons END AS persons, t.suppressed "
            f"FROM work.person_flow t {_PUBLISHED}",
        ),
        Relation(
            "marts.payments_proposed",
            "The payment lines of the published run under the plan's terms (status proposed "
            "until approved).",
            {**_TRACE, **_PAYMENT_COLS},
            f"SELECT {_TRACE_SQL}, t.rule, t.kind, t.description, t.achievement, "
            f"t.max_amount, t.amount, t.currency, t.status FROM work.payments_proposed t "
            f"{_PUBLISHED}",
        ),
        Relation(
            "marts.payment_proposal",
            "The whole payment proposal of the published run: total, basis and the payment "
            "range, with the proposal as JSON.",
            {
                **_TRACE,
                "total": "Proposed total (exact decimal).",
                "currency": "Currency of the amounts.",
                "basis": "What the variable rules paid on (payment.basis).",
                "proposal_json": "The proposal as the report shows it, as JSON.",
            },
            f"SELECT {_TRACE_SQL}, "
            "TRY_CAST(json_extract_string(t.proposal_json, '$.total') AS DECIMAL(18,2)) "
            "AS total, json_extract_string(t.proposal_json, '$.currency') AS currency, "
            "json_extract_string(t.proposal_json, '$.basis') AS basis, t.proposal_json "
            f"FROM work.payment_proposal t {_PUBLISHED}",
        ),
        Relation(
            "marts.decisions",
            "The independent validator's decisions (ledger.decisions), with the plan hash "
            "and inputs of the run decided on.",
            {
                "contract_id": _TRACE["contract_id"],
                "run_id": "The run whose report was decided on.",
                "plan_hash": _TRACE["plan_hash"],
                "inputs_sha256": _TRACE["inputs_sha256"],
                "period": "The measurement period the decision covers.",
                "decision": "What the validator decided.",
                "signer_fingerprint": "Fingerprint of the public key that signed it.",
                "decided_at": "When it was recorded (UTC).",
                "reason": "The validator's stated reason, if any.",
            },
            "SELECT d.contract_id, d.run_id, r.plan_hash, i.inputs_sha256, d.period, "
            "d.decision, d.signer AS signer_fingerprint, "
            "TRY_CAST(d.decided_at AS TIMESTAMP) AS decided_at, d.reason "
            "FROM ledger.decisions d LEFT JOIN ledger.runs r ON r.run_id = d.run_id "
            "LEFT JOIN ledger.run_inputs i ON i.contract_id = d.contract_id "
            "AND i.run_id = d.run_id",
        ),
        Relation(
            "restricted.outcome_panel",
            "RESTRICTED (validators only): the published run's outcome per unit and period "
            "without small-cell suppression.",
            {
                **_TRACE,
                **_OUTCOME_COLS,
                "unit_id": "The organisational unit.",
                "employees": "Distinct employees with an eligible row in the cell.",
                "numerator": "The metric's numerator.",
                "denominator": "The metric's denominator.",
                "value": "numerator / denominator.",
            },
            "SELECT t.contract_id, t.run_id, p.plan_hash, i.inputs_sha256, t.outcome, "
            't.period_start, t.period_end, t.phase, t."group" AS arm, t.unit_id, '
            "t.employees, t.numerator, t.denominator, t.value "
            f"FROM work.outcome_panel t {_PUBLISHED}",
        ),
        Relation(
            "restricted.effects",
            "RESTRICTED (validators only): the published run's effects with the estimator's "
            "full result, per-unit diagnostics included.",
            {
                **_TRACE,
                **_EFFECT_COLS,
                "result_json": "The estimator's whole result as JSON (per-unit values).",
            },
            f"SELECT {_TRACE_SQL}, t.outcome, t.method, t.estimate, t.std_error, t.ci_low, "
            "t.ci_high, t.confidence, t.relative_estimate, t.n_treated, t.n_comparison, "
            f"t.result_json FROM work.effects t {_PUBLISHED}",
        ),
    ]


VIEWS: list[Relation] = _views()
TABLES: list[Relation] = [
    Relation(name, comment, {c: f"{t} -- {d}" for c, (t, d) in cols.items()})
    for name, (comment, cols) in _TABLES.items()
]
#: The marts analysts read (and the snapshot exports), in the data dictionary's order.
MARTS: list[str] = [v.name for v in VIEWS if v.name.startswith("marts.")]
SCHEMAS = ("marts", "restricted")

SCHEMA_COMMENTS = {
    "marts": "Documented views of each contract's published run for analysts; no identifiers "
    "or pseudonyms, small cells suppressed.",
    "restricted": "Views a validator may need that bypass small-cell suppression; not for "
    "analysts.",
}


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def create(con: duckdb.DuckDBPyConnection) -> None:
    """Create the marts' tables and views with their comments (idempotent; call after
    `layout.create`, inside its transaction)."""
    for schema in SCHEMAS:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for name, (comment, cols) in _TABLES.items():
        ddl = ", ".join(f'"{c}" {t}' for c, (t, _) in cols.items())
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({ddl})")
        con.execute(f"COMMENT ON TABLE {name} IS {_quote(comment)}")
        for c, (_, text) in cols.items():
            con.execute(f'COMMENT ON COLUMN {name}."{c}" IS {_quote(text)}')
    # Only what exists: a ledger column another module drops must not stop the warehouse
    # from opening (tests/test_marts.py fails on any column left undescribed).
    present = set(
        con.execute(
            "SELECT schema_name || '.' || table_name, column_name FROM duckdb_columns() "
            "WHERE schema_name = 'ledger'"
        ).fetchall()
    )
    for name, (comment, cols) in _LEDGER_COMMENTS.items():
        if not any(t == name for t, _ in present):
            continue
        con.execute(f"COMMENT ON TABLE {name} IS {_quote(comment)}")
        for c, text in cols.items():
            if (name, c) in present:
                con.execute(f'COMMENT ON COLUMN {name}."{c}" IS {_quote(text)}')
    for name, (comment, cols) in _LEDGER_VIEW_COMMENTS.items():
        con.execute(f"COMMENT ON VIEW {name} IS {_quote(comment)}")
        for c, text in cols.items():
            con.execute(f'COMMENT ON COLUMN {name}."{c}" IS {_quote(text)}')
    for view in VIEWS:
        con.execute(f"CREATE OR REPLACE VIEW {view.name} AS {view.sql}")
        con.execute(f"COMMENT ON VIEW {view.name} IS {_quote(view.comment)}")
    # Every view's columns from one catalog query (one query per view cost ~1 ms each).
    columns: dict[str, list[str]] = {}
    for name, column in con.execute(
        "SELECT schema_name || '.' || table_name, column_name FROM duckdb_columns() "
        "WHERE list_contains(?, schema_name) ORDER BY schema_name, table_name, column_index",
        [sorted({v.name.split(".")[0] for v in VIEWS})],
    ).fetchall():
        columns.setdefault(name, []).append(column)
    for view in VIEWS:
        actual = columns.get(view.name, [])
        if actual != list(view.columns):
            raise AssertionError(f"{view.name}: columns {actual} differ from documented ones")
        for c, text in view.columns.items():
            con.execute(f'COMMENT ON COLUMN {view.name}."{c}" IS {_quote(text)}')


def record_plan(con: duckdb.DuckDBPyConnection, plan, run) -> None:
    """Store the plan settings the marts need (periods, method, threshold) for `run`."""
    b0, b1 = plan.period("baseline")
    m0, m1 = plan.period("measurement")
    d = plan.data
    con.execute(
        "DELETE FROM ledger.run_plans WHERE contract_id = ? AND run_id = ?",
        [run.contract_id, run.run_id],
    )
    con.execute(
        "INSERT INTO ledger.run_plans VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            run.contract_id,
            run.run_id,
            plan.hash,
            d["contract"].get("title"),
            d["contract"].get("instrument"),
            b0,
            b1,
            m0,
            m1,
            d["periods"].get("frequency"),
            plan.counterfactual.get("method"),
            plan.counterfactual.get("confidence"),
            plan.payment.get("currency"),
            plan.min_cell_size,
        ],
    )
