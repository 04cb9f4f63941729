#!/usr/bin/env python3
"""Benchmark a whole measurement run against plain DuckDB on the same files.

    .venv/bin/python scripts/benchmark.py [--employees 100000] [--defect-rate 0.01]

Prints rows, wall and CPU seconds per stage (as the run records them in ledger.runs), peak
memory (RSS) and the ratio of utfall's time (ingest to outcome panel, data quality left
out) to two baselines on the same CSV files:

* a floor: plain DuckDB computing the same short-term sick-day sums per unit and quarter in
  one in-memory query, with no identity check, pseudonymisation, validation, quarantine or
  writes, so its ratio is an upper bound on overhead;
* the same work written by hand in DuckDB SQL: the files loaded into a database file, every
  identity number checked (Luhn) and replaced by a keyed hash, the rows validated (dates,
  ranges, extents, duplicates) into staging and quarantine tables, the panel from staging,
  committed, then every source's rows counted back (delivered = staged + quarantined). It
  lacks utfall's per-row detail in quarantine, reconciliation records, ledger and checks,
  so it is a lower bound on what that work costs.

Performance is measured here, not in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from utfall import warehouse  # noqa: E402
from utfall.cli import EXAMPLE_PLAN, simulate_deliveries  # noqa: E402
from utfall.pipeline import run  # noqa: E402
from utfall.plan import load_plan  # noqa: E402

#: Short-term sick days (days 1-14 of a spell, by extent) per unit and quarter, from
#: `{spells}` and `{roster}` joined on `{person}`: both baselines' panel.
PANEL_SQL = """
WITH q AS (
    SELECT unnest(generate_series(DATE '{b0}', DATE '{m1}', INTERVAL 3 MONTH))::DATE AS q0
), periods AS (
    SELECT q0 AS period_start, (q0 + INTERVAL 3 MONTH - INTERVAL 1 DAY)::DATE AS period_end FROM q
)
SELECT r.unit_id, p.period_start,
       sum(greatest(0, date_diff('day', greatest(s.spell_start, p.period_start),
           least(s.spell_start + 13, s.spell_end, p.period_end)) + 1) * s.extent) / 100.0 AS days
FROM {spells} s
JOIN {roster} r USING ({person})
JOIN periods p ON s.spell_start <= p.period_end AND s.spell_end >= p.period_start
GROUP BY ALL
"""


SAME_WORK_SQL = """
CREATE TABLE raw_roster AS
    SELECT row_number() OVER () AS line, * FROM read_csv('{roster}', all_varchar = true);
CREATE TABLE raw_spells AS
    SELECT row_number() OVER () AS line, * FROM read_csv('{spells}', all_varchar = true);
CREATE MACRO luhn_ok(p) AS (
    regexp_full_match(p, '[0-9]{{8}}[-+]?[0-9]{{4}}')
    AND (
        list_sum(list_transform(range(9), lambda i: (
            (CAST(substr(regexp_replace(p, '[-+]', ''), 3 + i, 1) AS INTEGER)
             * CASE WHEN i % 2 = 0 THEN 2 ELSE 1 END) // 10
          + (CAST(substr(regexp_replace(p, '[-+]', ''), 3 + i, 1) AS INTEGER)
             * CASE WHEN i % 2 = 0 THEN 2 ELSE 1 END) % 10)))
        + CAST(right(p, 1) AS INTEGER)
    ) % 10 = 0
);
CREATE MACRO pseudonym(p) AS sha256('{key}' || regexp_replace(p, '[-+]', ''));
CREATE TABLE checked_roster AS
    SELECT line, pseudonym(personnummer) AS person_id, unit_id,
           TRY_CAST(employment_extent AS INTEGER) AS extent,
           TRY_CAST(employed_from AS DATE) AS employed_from,
           TRY_CAST(employed_to AS DATE) AS employed_to,
           CASE
             WHEN NOT luhn_ok(personnummer) THEN 'invalid_personnummer'
             WHEN unit_id IS NULL THEN 'missing_unit'
             WHEN TRY_CAST(employed_from AS DATE) IS NULL THEN 'bad_date'
             WHEN employed_to IS NOT NULL AND TRY_CAST(employed_to AS DATE) IS NULL THEN 'bad_date'
             WHEN TRY_CAST(employed_to AS DATE) < TRY_CAST(employed_from AS DATE)
               THEN 'end_before_start'
             WHEN row_number() OVER (PARTITION BY personnummer, birth_year, sex, unit_id,
                 employment_extent, employed_from, employed_to ORDER BY line) > 1
               THEN 'duplicate'
           END AS rule
    FROM raw_roster;
CREATE TABLE checked_spells AS
    SELECT line, pseudonym(personnummer) AS person_id,
           TRY_CAST(spell_start AS DATE) AS spell_start, TRY_CAST(spell_end AS DATE) AS spell_end,
           TRY_CAST(extent AS INTEGER) AS extent,
           CASE
             WHEN NOT luhn_ok(personnummer) THEN 'invalid_personnummer'
             WHEN TRY_CAST(spell_start AS DATE) IS NULL OR TRY_CAST(spell_end AS DATE) IS NULL
               THEN 'bad_date'
             WHEN TRY_CAST(spell_start AS DATE) NOT BETWEEN DATE '1900-01-01' AND DATE '{latest}'
               OR TRY_CAST(spell_end AS DATE) NOT BETWEEN DATE '1900-01-01' AND DATE '{latest}'
               THEN 'date_out_of_range'
             WHEN TRY_CAST(spell_end AS DATE) < TRY_CAST(spell_start AS DATE)
               THEN 'end_before_start'
             WHEN TRY_CAST(extent AS INTEGER) IS NULL
               OR TRY_CAST(extent AS INTEGER) NOT IN (25, 50, 75, 100) THEN 'bad_extent'
             WHEN row_number() OVER (PARTITION BY personnummer, spell_start, spell_end, extent
                 ORDER BY line) > 1
               THEN 'duplicate'
           END AS rule
    FROM raw_spells;
CREATE TABLE spells_ruled AS
    SELECT line, person_id, spell_start, spell_end, extent,
           CASE WHEN lag(spell_end) OVER w >= spell_start THEN 'overlapping_spell' END AS rule
    FROM checked_spells WHERE rule IS NULL
    WINDOW w AS (PARTITION BY person_id ORDER BY spell_start, line)
    UNION ALL SELECT * FROM checked_spells WHERE rule IS NOT NULL;
CREATE TABLE staging_roster AS SELECT * EXCLUDE (rule) FROM checked_roster WHERE rule IS NULL;
CREATE TABLE staging_spells AS SELECT * EXCLUDE (rule) FROM spells_ruled WHERE rule IS NULL;
CREATE TABLE quarantine AS
    SELECT 'roster' AS source, line, rule FROM checked_roster WHERE rule IS NOT NULL
    UNION ALL SELECT 'sick_leave', line, rule FROM spells_ruled WHERE rule IS NOT NULL;
CREATE TABLE panel AS {panel};
"""


def same_work_baseline(deliveries: Path, path: Path, plan) -> tuple[float, dict[str, tuple]]:
    """Seconds for SAME_WORK_SQL into the database file `path`, and per source (delivered,
    staged, quarantined) as counted back after the commit (they must reconcile)."""
    import datetime as dt

    import duckdb

    b0, _ = plan.period("baseline")
    _, m1 = plan.period("measurement")
    panel = PANEL_SQL.format(
        spells="staging_spells", roster="staging_roster", person="person_id", b0=b0, m1=m1
    )
    sql = SAME_WORK_SQL.format(
        roster=deliveries / "roster.csv",
        spells=deliveries / "sick_leave.csv",
        key=os.environ["UTFALL_PSEUDONYM_KEY"],
        latest=m1 + dt.timedelta(days=365),
        panel=panel,
    )
    t0 = time.perf_counter()
    con = duckdb.connect(str(path))
    con.execute("BEGIN TRANSACTION")
    con.execute(sql)
    con.execute("COMMIT")
    counts = {}
    for source, raw, staged in (
        ("roster", "raw_roster", "staging_roster"),
        ("sick_leave", "raw_spells", "staging_spells"),
    ):
        counts[source] = con.sql(
            f"SELECT (SELECT count(*) FROM {raw}), (SELECT count(*) FROM {staged}), "
            f"(SELECT count(*) FROM quarantine WHERE source = '{source}')"
        ).fetchall()[0]
        delivered, kept, quarantined = counts[source]
        if delivered != kept + quarantined:
            raise AssertionError(f"same-work baseline lost rows of {source}: {counts[source]}")
    con.close()
    return time.perf_counter() - t0, counts


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--employees", type=int, default=100_000)
    ap.add_argument("--defect-rate", type=float, default=0.01)
    args = ap.parse_args()
    os.environ.setdefault("UTFALL_PSEUDONYM_KEY", "benchmark-key-not-secret-0000000000000")
    os.environ.setdefault("UTFALL_CHROMIUM", "off")  # no report.pdf per run (3-10 s)
    plan = load_plan(EXAMPLE_PLAN)
    tmp = Path(tempfile.mkdtemp(prefix="utfall-bench-"))
    deliveries, db = tmp / "deliveries", tmp / "w.duckdb"
    timings: list[tuple[str, float]] = []
    cpu: dict[str, float] = {}

    def timed(label, fn):
        t0 = time.perf_counter()
        out = fn()
        timings.append((label, time.perf_counter() - t0))
        print(f"  {label:<22} {timings[-1][1]:8.2f} s", file=sys.stderr, flush=True)
        return out

    print(f"benchmark: {args.employees} employees, {tmp}", file=sys.stderr)
    timed(
        "simulate",
        lambda: simulate_deliveries(
            EXAMPLE_PLAN, deliveries, args.employees, 0.12, args.defect_rate, None
        ),
    )
    rows = {f.name: sum(1 for _ in f.open()) - 1 for f in sorted(deliveries.glob("*.csv"))}
    t0 = time.perf_counter()
    result = run(plan, db, deliveries, tmp / "report", progress=lambda m: print(m, file=sys.stderr))
    whole = time.perf_counter() - t0
    con = warehouse.connect(db, read_only=True)
    stage_times = json.loads(
        warehouse.scalar(
            con, "SELECT timings_json FROM ledger.runs WHERE run_id = ?", [result.run_id]
        )
    )
    con.close()
    for label, t in stage_times.items():
        timings.append((label, t["wall_s"]))
        cpu[label] = t["cpu_s"]
    timings.append(("report, publish, rest", whole - sum(t for _, t in timings[1:])))
    utfall_peak = peak_rss_mb()
    validated = {
        v.source: f"{v.loaded:,} loaded + {v.quarantined:,} quarantined" for v in result.validations
    }

    import duckdb

    b0, _ = plan.period("baseline")
    _, m1 = plan.period("measurement")
    plain = duckdb.connect()
    sql = PANEL_SQL.format(
        spells=f"read_csv('{deliveries / 'sick_leave.csv'}')",
        roster=f"read_csv('{deliveries / 'roster.csv'}')",
        person="personnummer",
        b0=b0,
        m1=m1,
    )
    t0 = time.perf_counter()
    plain.sql(sql).fetchall()
    baseline = time.perf_counter() - t0

    same_work, same_counts = same_work_baseline(deliveries, tmp / "same_work.duckdb", plan)

    through_panel = sum(
        t for label, t in timings if label.startswith(("ingest", "validate", "cohort", "outcome"))
    )
    total = sum(t for label, t in timings if label != "simulate")
    print()
    print(f"rows: {', '.join(f'{k} {v:,}' for k, v in rows.items())}")
    print(f"{'stage':<24}{'wall s':>10}{'cpu s':>10}")
    for label, t in timings:
        c = f"{cpu[label]:>10.2f}" if label in cpu else f"{'':>10}"
        print(f"{label:<24}{t:>10.2f}{c}")
    print(f"{'utfall total (no sim)':<24}{total:>10.2f}")
    print(f"{'plain DuckDB baseline':<24}{baseline:>10.2f}")
    print(f"{'same work in DuckDB SQL':<24}{same_work:>10.2f}")
    print(f"utfall ingest..panel (no data quality): {through_panel:.2f} s")
    print(f"ratio ingest..panel / plain DuckDB floor: {through_panel / baseline:.1f}x")
    print(f"ratio ingest..panel / same work in DuckDB SQL: {through_panel / same_work:.1f}x")
    for source, (delivered, kept, quarantined) in same_counts.items():
        print(
            f"same-work baseline {source}: {delivered:,} delivered = {kept:,} staged + "
            f"{quarantined:,} quarantined (utfall: {validated.get(source, '?')})"
        )
    print(f"peak RSS: {utfall_peak:,.0f} MB (whole process, simulation included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
