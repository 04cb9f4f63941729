"""The warehouse's tables and the views readers see.

Every stage of a run writes rows tagged with `contract_id` and `run_id` into the tables of
schema `work`. Nothing there is visible as "the" result: readers (analysts, Dagster, the
report) read the views in `raw`, `staging`, `quarantine` and `marts`, which show only the
rows of each contract's *published* run (`ledger.published`). A run becomes visible in one
transaction when it has finished every stage, so a failed, rejected or killed run never
mixes into what is published, and several contracts share one warehouse without touching
each other's rows.

Tables are created with explicit DDL (never `CREATE TABLE ... AS ... LIMIT 0`, which lost
rows under DuckDB 2.0.0).
"""

from __future__ import annotations

import duckdb

from utfall.warehouse import marts

#: Bumped whenever a table changes shape; a warehouse of another version is refused.
SCHEMA_VERSION = "5"
SCHEMAS = ("ledger", "work", "raw", "quarantine", "staging", "marts")

#: Typed columns of each source kind after validation (raw keeps them all as text).
KIND_COLUMNS: dict[str, dict[str, str]] = {
    "employee_roster": {
        "birth_year": "BIGINT",
        "sex": "VARCHAR",
        "unit_id": "VARCHAR",
        "employment_extent": "BIGINT",
        "employed_from": "DATE",
        "employed_to": "DATE",
    },
    "sick_leave_spells": {
        "spell_start": "DATE",
        "spell_end": "DATE",
        "extent": "BIGINT",
    },
}

#: The generic kinds (person_table, unit_panel): their fixed columns as raw text, then
#: typed in staging. Their outcome and covariate columns vary by plan, so they are not
#: columns here: raw keeps them as delivered in `values_json` (a JSON object of text), and
#: staging in the long table `work.staging_values` (one row per delivered row and variable,
#: `value_num` DOUBLE for numbers, `value_text` for categories), joined on the row's
#: lineage (source, _file, _line). One fixed layout then serves every contract in the
#: warehouse and its version check, and an analyst can still pivot by SQL.
GENERIC_RAW_COLUMNS: dict[str, tuple[str, ...]] = {
    "person_table": ("treatment",),
    "unit_panel": ("unit_id", "period", "treated", "treatment_start", "weight"),
}
GENERIC_STAGED_COLUMNS: dict[str, dict[str, str]] = {
    "person_table": {"treatment": "VARCHAR NOT NULL", "group": "VARCHAR NOT NULL"},
    "unit_panel": {
        "unit_id": "VARCHAR NOT NULL",
        "period": "DATE NOT NULL",
        "phase": "VARCHAR NOT NULL",  # baseline / measurement, from the plan's periods
        "group": "VARCHAR NOT NULL",  # treated / comparison, constant per unit
        "treatment": "VARCHAR",  # the delivered flag (null when treatment_start is mapped)
        "treatment_start": "DATE",  # as delivered; null: never treated, or flag-mapped
        "weight": "DOUBLE",  # null when the plan maps no weight column
    },
}

#: The person-level kinds of the outcome contracts (utfall/kinds, one module each): raw keeps
#: their delivered columns as text (participants' covariates as text in `values_json`, as a
#: person_table's), staging their typed columns, explicitly (participants' covariates in
#: work.staging_values).
PERSON_RAW_COLUMNS: dict[str, tuple[str, ...]] = {
    "participants": ("treated", "enrolled_on", "exit_on", "exit_reason", "age", "sex"),
    "lab_results": ("sample_date", "analyte", "value", "unit"),
    "employment_status": ("month", "status", "earnings"),
    "public_costs": ("month", "cost_type", "amount"),
}
PERSON_STAGED_COLUMNS: dict[str, dict[str, str]] = {
    "participants": {
        "treated": "TINYINT NOT NULL",
        "enrolled_on": "DATE NOT NULL",
        "exit_on": "DATE",
        "exit_reason": "VARCHAR",
        "age": "BIGINT NOT NULL",
        "sex": "VARCHAR NOT NULL",
    },
    "lab_results": {
        "sample_date": "DATE NOT NULL",
        "analyte": "VARCHAR NOT NULL",
        "value_delivered": "DOUBLE NOT NULL",
        "unit_delivered": "VARCHAR NOT NULL",
        # the delivered scale: ifcc, ngsp or mono_s (HbA1c), mmol_l or mg_dl (glucose), kg,
        # kg_m2; whether and how the value was converted (utfall.domains.labs)
        "conversion": "VARCHAR NOT NULL",
        "value": "DOUBLE NOT NULL",  # in `unit`, the analyte's stored unit
        "unit": "VARCHAR NOT NULL",  # mmol/mol (HbA1c), mmol/L, kg, kg/m2
        "warning": "VARCHAR",  # outside_<low>_<high>: outside the analyte's warning range
    },
    "employment_status": {
        "month": "DATE NOT NULL",  # the first day of the month
        "status": "VARCHAR NOT NULL",  # employed, unemployed, in_education_or_training, other
        "earnings": "DECIMAL(18,2)",  # exact; null where not delivered
    },
    "public_costs": {
        "month": "DATE NOT NULL",  # the first day of the month
        "cost_type": "VARCHAR NOT NULL",  # benefit, placement, care, other
        "amount": "DECIMAL(18,2) NOT NULL",  # exact; negative = a correction
    },
}
#: Person kinds whose raw rows carry the plan's covariates in values_json.
PERSON_KINDS_WITH_VALUES = ("participants",)

_SCOPE = "contract_id VARCHAR NOT NULL, run_id VARCHAR NOT NULL"
_SOURCE_ROW = _SCOPE + ", source VARCHAR NOT NULL, _file VARCHAR NOT NULL, _line BIGINT NOT NULL"

LEDGER_TABLES = {
    "ledger.meta": "key VARCHAR NOT NULL, value VARCHAR",
    "ledger.runs": (
        "run_id VARCHAR NOT NULL, contract_id VARCHAR NOT NULL, plan_hash VARCHAR NOT NULL, "
        "plan_file VARCHAR, key_fingerprint VARCHAR, code_version VARCHAR, origin VARCHAR, "
        "started_at TIMESTAMP, finished_at TIMESTAMP, status VARCHAR NOT NULL, "
        "stage VARCHAR, error VARCHAR, timings_json VARCHAR"
    ),
    "ledger.published": (
        "contract_id VARCHAR NOT NULL, run_id VARCHAR NOT NULL, plan_hash VARCHAR NOT NULL, "
        "published_at TIMESTAMP"
    ),
    # Rows per month of each run's valid data, kept for good: the history that the next
    # different delivery's volume is compared with.
    "ledger.profiles": (
        _SCOPE + ", source VARCHAR NOT NULL, month DATE NOT NULL, rows BIGINT NOT NULL"
    ),
    "ledger.deliveries": (
        _SCOPE + ", source VARCHAR NOT NULL, file VARCHAR NOT NULL, sha256 VARCHAR NOT NULL, "
        "bytes BIGINT NOT NULL, rows BIGINT, received_at TIMESTAMP, "
        "status VARCHAR NOT NULL"
    ),
    # The append-only hash chain of published runs, decisions and payments (see `chain`).
    "ledger.chain": (
        "seq BIGINT NOT NULL, kind VARCHAR NOT NULL, contract_id VARCHAR NOT NULL, "
        "recorded_at VARCHAR NOT NULL, payload_json VARCHAR NOT NULL, "
        "prev_sha256 VARCHAR NOT NULL, sha256 VARCHAR NOT NULL"
    ),
}

#: Views of the chain's decision and payment entries (see `chain`).
LEDGER_VIEWS = {
    "ledger.decisions": (
        "SELECT seq, sha256 AS entry_sha256, contract_id, recorded_at, "
        "(SELECT json_extract_string(r.payload_json, '$.run_id') FROM ledger.chain r "
        "WHERE r.kind = 'run' AND json_extract_string(r.payload_json, '$.manifest_sha256') = "
        "json_extract_string(c.payload_json, '$.manifest_sha256') "
        "ORDER BY r.seq DESC LIMIT 1) AS run_id, "
        "json_extract_string(payload_json, '$.decided_at') AS decided_at, "
        "json_extract_string(payload_json, '$.period') AS period, "
        "json_extract_string(payload_json, '$.decision') AS decision, "
        "CAST(json_extract(payload_json, '$.version') AS BIGINT) AS version, "
        "json_extract_string(payload_json, '$.report_sha256') AS report_sha256, "
        "json_extract_string(payload_json, '$.signer') AS signer, "
        "json_extract_string(payload_json, '$.reason') AS reason, "
        "json_extract_string(payload_json, '$.reference') AS reference "
        "FROM ledger.chain c WHERE kind = 'decision'"
    ),
    "ledger.payments": (
        "SELECT seq, sha256 AS entry_sha256, contract_id, recorded_at, "
        "json_extract_string(payload_json, '$.period') AS period, "
        "json_extract_string(payload_json, '$.payee') AS payee, "
        "CAST(json_extract_string(payload_json, '$.amount') AS DECIMAL(18,2)) AS amount, "
        "json_extract_string(payload_json, '$.currency') AS currency, "
        "json_extract_string(payload_json, '$.decision_reference') AS decision_reference "
        "FROM ledger.chain WHERE kind = 'payment'"
    ),
}


def _work_tables() -> dict[str, str]:
    tables = {}
    for kind, cols in KIND_COLUMNS.items():
        text = ", ".join(f'"{c}" VARCHAR' for c in cols)
        typed = ", ".join(f'"{c}" {t}' for c, t in cols.items())
        tables[f"work.raw_{kind}"] = (
            f"{_SOURCE_ROW}, person_id VARCHAR, pnr_problem VARCHAR, {text}"
        )
        tables[f"work.staging_{kind}"] = f"{_SOURCE_ROW}, person_id VARCHAR NOT NULL, {typed}"
    for kind, raw_cols in GENERIC_RAW_COLUMNS.items():
        text = ", ".join(f'"{c}" VARCHAR' for c in raw_cols)
        typed = ", ".join(f'"{c}" {t}' for c, t in GENERIC_STAGED_COLUMNS[kind].items())
        tables[f"work.raw_{kind}"] = (
            f"{_SOURCE_ROW}, person_id VARCHAR, pnr_problem VARCHAR, {text}, values_json VARCHAR"
        )
        tables[f"work.staging_{kind}"] = f"{_SOURCE_ROW}, person_id VARCHAR, {typed}"
    for kind, raw_cols in PERSON_RAW_COLUMNS.items():
        text = ", ".join(f'"{c}" VARCHAR' for c in raw_cols)
        values = ", values_json VARCHAR" if kind in PERSON_KINDS_WITH_VALUES else ""
        typed = ", ".join(f'"{c}" {t}' for c, t in PERSON_STAGED_COLUMNS[kind].items())
        tables[f"work.raw_{kind}"] = (
            f"{_SOURCE_ROW}, person_id VARCHAR, pnr_problem VARCHAR, {text}{values}"
        )
        tables[f"work.staging_{kind}"] = f"{_SOURCE_ROW}, person_id VARCHAR NOT NULL, {typed}"
    tables.update(
        {
            "work.staging_values": (
                _SOURCE_ROW + ", variable VARCHAR NOT NULL, role VARCHAR NOT NULL, "
                "value_num DOUBLE, value_text VARCHAR"
            ),
            "work.quarantine_rows": (
                _SCOPE + ", source VARCHAR NOT NULL, file VARCHAR NOT NULL, line BIGINT NOT NULL, "
                "rule VARCHAR NOT NULL, rules VARCHAR NOT NULL, detail VARCHAR, record VARCHAR"
            ),
            "work.reconciliation": (
                _SCOPE + ", source VARCHAR NOT NULL, delivered BIGINT NOT NULL, "
                "loaded BIGINT NOT NULL, quarantined BIGINT NOT NULL"
            ),
            "work.quality_results": (
                _SCOPE + ", source VARCHAR NOT NULL, expectation VARCHAR NOT NULL, "
                "severity VARCHAR NOT NULL, success BOOLEAN NOT NULL, observed VARCHAR, "
                "details_json VARCHAR"
            ),
            "work.cohort_units": (
                _SCOPE + ', unit_id VARCHAR NOT NULL, "group" VARCHAR, status VARCHAR NOT NULL, '
                "employees BIGINT NOT NULL, note VARCHAR"
            ),
            "work.outcome_panel": (
                _SCOPE + ', outcome VARCHAR NOT NULL, unit_id VARCHAR NOT NULL, "group" VARCHAR, '
                "period_start DATE NOT NULL, period_end DATE NOT NULL, phase VARCHAR, "
                "employees BIGINT, numerator DOUBLE, denominator DOUBLE, value DOUBLE, "
                "treatment_start DATE"
            ),
            "work.effects": (
                _SCOPE + ", outcome VARCHAR NOT NULL, method VARCHAR, estimate DOUBLE, "
                "std_error DOUBLE, ci_low DOUBLE, ci_high DOUBLE, confidence DOUBLE, "
                "relative_estimate DOUBLE, n_treated BIGINT, n_comparison BIGINT, "
                "plan_hash VARCHAR NOT NULL, result_json VARCHAR, restricted_json VARCHAR"
            ),
            # The flow of persons into each person-data outcome's estimate, per arm (see
            # utfall.domains.person.person_flow): step enrolled, excluded (reason not_eligible,
            # variable = the criterion), eligible, dropped (reason no_outcome, or
            # missing_covariate with the variable), analysed; seq keeps the order. suppressed:
            # hidden in the report, primary or complementary (utfall.report.flow_suppression).
            "work.person_flow": (
                _SCOPE + ", outcome VARCHAR NOT NULL, arm VARCHAR NOT NULL, seq BIGINT NOT NULL, "
                "step VARCHAR NOT NULL, reason VARCHAR, variable VARCHAR, "
                "persons BIGINT NOT NULL, suppressed BOOLEAN NOT NULL"
            ),
            "work.payments_proposed": (
                _SCOPE + ", plan_hash VARCHAR NOT NULL, rule BIGINT, kind VARCHAR, "
                "description VARCHAR, achievement DECIMAL(10,6), max_amount DECIMAL(18,2), "
                "amount DECIMAL(18,2), currency VARCHAR, status VARCHAR"
            ),
            "work.payment_proposal": (
                _SCOPE + ", plan_hash VARCHAR NOT NULL, proposal_json VARCHAR NOT NULL"
            ),
        }
    )
    return tables


WORK_TABLES = _work_tables()

#: Published view -> the work table it shows.
VIEWS: dict[str, str] = {
    **{
        f"raw.{kind}": f"work.raw_{kind}"
        for kind in (*KIND_COLUMNS, *GENERIC_RAW_COLUMNS, *PERSON_RAW_COLUMNS)
    },
    **{
        f"staging.{kind}": f"work.staging_{kind}"
        for kind in (*KIND_COLUMNS, *GENERIC_RAW_COLUMNS, *PERSON_RAW_COLUMNS)
    },
    "staging.values": "work.staging_values",
    "raw.deliveries": "ledger.deliveries",
    "quarantine.rows": "work.quarantine_rows",
    "quarantine.reconciliation": "work.reconciliation",
}
# The marts (documented, suppressed, no identifiers) are defined in `marts`.

_PUBLISHED_ONLY = (
    "SELECT t.*{exclude} FROM {table} t WHERE EXISTS (SELECT 1 FROM ledger.published p "
    "WHERE p.contract_id = t.contract_id AND p.run_id = t.run_id)"
)
#: Columns a published view leaves out: an estimator's restricted (per-unit or per-person)
#: detail stays in work.effects, for those with access to the run's rows, never in marts.
VIEW_EXCLUDES: dict[str, tuple[str, ...]] = {"marts.effects": ("restricted_json",)}


def create(con: duckdb.DuckDBPyConnection) -> None:
    """Create every schema, table and view that is missing (idempotent)."""
    for schema in SCHEMAS:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for name, columns in {**LEDGER_TABLES, **WORK_TABLES}.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")
    for view, table in VIEWS.items():
        excluded = VIEW_EXCLUDES.get(view)
        exclude = f" EXCLUDE ({', '.join(excluded)})" if excluded else ""
        sql = _PUBLISHED_ONLY.format(table=table, exclude=exclude)
        con.execute(f"CREATE OR REPLACE VIEW {view} AS {sql}")
    for view, sql in LEDGER_VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW {view} AS {sql}")
    # Every run, whatever became of it, with its rows kept until the contract's next publish.
    con.execute(
        "CREATE OR REPLACE VIEW quarantine.by_run AS SELECT q.*, r.status AS run_status "
        "FROM work.quarantine_rows q JOIN ledger.runs r USING (run_id, contract_id)"
    )
    marts.create(con)
