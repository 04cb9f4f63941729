#!/usr/bin/env python3
"""Benchmark a whole measurement run against plain DuckDB on the same files.

    .venv/bin/python scripts/benchmark.py [--employees 100000] [--defect-rate 0.01]

Prints rows, wall and CPU seconds per stage (as the run records them in ledger.runs), peak
memory (RSS) and the ratio of utfall's time (ingest to outcome panel) to a floor: plain
DuckDB reading the same CSV files and computing the same short-term sick-day sums per unit
and quarter in one SQL query. The floor does less work (no identity check,
pseudonymisation, validation, quarantine, data-quality suites or verified writes), so the
ratio is an upper bound on overhead, not a like-for-like comparison. Performance is
measured here, not in tests.
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

PLAIN_SQL = """
WITH q AS (
    SELECT unnest(generate_series(DATE '{b0}', DATE '{m1}', INTERVAL 3 MONTH))::DATE AS q0
), periods AS (
    SELECT q0 AS period_start, (q0 + INTERVAL 3 MONTH - INTERVAL 1 DAY)::DATE AS period_end FROM q
)
SELECT r.unit_id, p.period_start,
       sum(greatest(0, date_diff('day', greatest(s.spell_start, p.period_start),
           least(s.spell_start + 13, s.spell_end, p.period_end)) + 1) * s.extent) / 100.0
FROM read_csv('{spells}') s
JOIN read_csv('{roster}') r USING (personnummer)
JOIN periods p ON s.spell_start <= p.period_end AND s.spell_end >= p.period_start
GROUP BY ALL
"""


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

    import duckdb

    b0, _ = plan.period("baseline")
    _, m1 = plan.period("measurement")
    plain = duckdb.connect()
    sql = PLAIN_SQL.format(
        b0=b0, m1=m1, spells=deliveries / "sick_leave.csv", roster=deliveries / "roster.csv"
    )
    t0 = time.perf_counter()
    plain.sql(sql).fetchall()
    baseline = time.perf_counter() - t0

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
    print(f"ratio ingest..panel / plain DuckDB: {through_panel / baseline:.1f}x")
    print(f"peak RSS: {utfall_peak:,.0f} MB (whole process, simulation included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
