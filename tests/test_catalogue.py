"""The hostile user's catalogue: bad inputs and faults, each with its expected answer.

Every class is run as a user runs it (`utfall run`, in process, output captured) against
an empty warehouse, or one that already holds a good run. The empty one is a copy of the
suite's empty warehouse (tests/conftest.py `empty_warehouse_file`, the layout without
creating it per case); the clean run every `prior_run` case starts from is measured into a
missing file, creating it as a user's first run does. Expected answers:

* `Error(pattern)`: exit 2, one message matching `pattern`, no traceback, and nothing
  written: no run of this case published, the report folder as it was;
* `Quarantined(rule, n)`: the run succeeds, exactly `n` rows carry `rule`, and
  delivered = loaded + quarantined holds against what is stored and what the files hold;
* `Warned(pattern)`: the run succeeds and the report's warnings say so.

`test_no_identity_number_anywhere` then scans every column of every table, every report
file and every message printed during the catalogue for identity numbers.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY, empty_warehouse_file, is_untouched_empty_warehouse
from utfall import personnummer, warehouse
from utfall.cli import EXAMPLE_PLAN, main, simulate_deliveries

CONTRACT = "demokommun-korttidssjuk-2025"
OTHER_KEY = "another-test-key-for-the-catalogue-0123456789"


@dataclass(frozen=True)
class Error:
    pattern: str


@dataclass(frozen=True)
class Quarantined:
    rule: str
    n: int


@dataclass(frozen=True)
class Warned:
    pattern: str


@dataclass
class Ctx:
    """One case's world: its deliveries, plan text, warehouse, report folder, key."""

    root: Path
    deliveries: Path
    plan: Path
    warehouse: Path
    out: Path
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)

    def edit_plan(self, old: str, new: str, count: int = 1) -> None:
        text = self.plan.read_text(encoding="utf-8")
        assert old in text, old
        self.plan.write_text(text.replace(old, new, count), encoding="utf-8")

    def lines(self, name: str) -> list[str]:
        return (self.deliveries / name).read_text(encoding="utf-8").splitlines()

    def write_lines(self, name: str, lines: list[str]) -> None:
        (self.deliveries / name).write_text("\n".join(lines) + "\n", encoding="utf-8")

    def edit_line(self, name: str, i: int, fn: Callable[[list[str]], list[str]]) -> str:
        """Change data line `i` (1 = first data row) by editing its fields; return it."""
        lines = self.lines(name)
        fields = lines[i].split(",")
        lines[i] = ",".join(fn(fields))
        self.write_lines(name, lines)
        return lines[i]


@dataclass(frozen=True)
class Case:
    name: str
    setup: Callable[[Ctx], None]
    expect: Error | Quarantined | Warned
    prior_run: bool = False  # measure the clean deliveries first
    no_warehouse: bool = False  # no empty warehouse file: the setup makes its own


# --- setups -------------------------------------------------------------------------------


def _spell_of(ctx: Ctx, i: int) -> list[str]:
    return ctx.lines("sick_leave.csv")[i].split(",")


def _append_spell(ctx: Ctx, fields: list[str]) -> None:
    ctx.write_lines("sick_leave.csv", ctx.lines("sick_leave.csv") + [",".join(fields)])


def _roster_rows(ctx: Ctx) -> list[list[str]]:
    return [ln.split(",") for ln in ctx.lines("roster.csv")[1:]]


def _pnr(birth: str, serial: str) -> str:
    nine = birth[2:] + serial
    return f"{birth}-{serial}{personnummer.luhn_digit(nine)}"


def _cut_spells(ctx: Ctx, share: float) -> None:
    lines = ctx.lines("sick_leave.csv")
    keep = 1 + int((len(lines) - 1) * share)
    ctx.write_lines("sick_leave.csv", lines[:keep])


def _one_comparison_unit(ctx: Ctx) -> None:
    text = ctx.plan.read_text(encoding="utf-8")
    start = text.index("  comparison_units:")
    end = text.index("  eligibility:")
    ctx.plan.write_text(
        text[:start] + "  comparison_units: [SKOLA-01]\n" + text[end:], encoding="utf-8"
    )
    ctx.edit_plan("max_quarantine_share: 0.05", "max_quarantine_share: 1.0", count=2)


def _zero_counterfactual(ctx: Ctx) -> None:
    """No treated spells in the baseline and no comparison spells in the measurement
    period: the counterfactual level (treated baseline + comparison change) is below 0."""
    unit = {r[0]: r[3] for r in _roster_rows(ctx)}
    treated = {
        u.strip()
        for u in "HEMTJ-01 HEMTJ-02 HEMTJ-03 HEMTJ-04 HEMTJ-05 HEMTJ-06 "
        "HEMTJ-07 HEMTJ-08 FSK-01 FSK-02 FSK-03 FSK-04 FSK-05 FSK-06 FSK-07 FSK-08".split()
    }
    lines = ctx.lines("sick_leave.csv")
    kept = [lines[0]]
    for ln in lines[1:]:
        pnr, start, *_ = ln.split(",")
        is_treated = unit.get(pnr) in treated
        baseline = start < "2025-01-01"
        if (is_treated and baseline) or (not is_treated and not baseline):
            continue
        kept.append(ln)
    ctx.write_lines("sick_leave.csv", kept)
    ctx.plan.write_text(
        ctx.plan.read_text(encoding="utf-8")
        + "\nquality:\n  expectations:\n    volume_vs_baseline: {severity: off}\n"
        "    volume_vs_history: {severity: off}\n    periods_present: {severity: off}\n",
        encoding="utf-8",
    )


def _symlink_outside(ctx: Ctx) -> None:
    secret = ctx.root / "outside.csv"
    shutil.copy(ctx.deliveries / "sick_leave.csv", secret)
    (ctx.deliveries / "sick_leave.csv").unlink()
    (ctx.deliveries / "sick_leave.csv").symlink_to(secret)


def _quoted_newline(ctx: Ctx) -> None:
    """A quoted field with a line break in the roster; then a bad extent further down in
    the spells, whose quarantine line must still be the physical line."""
    lines = ctx.lines("roster.csv")
    f = lines[5].split(",")
    f[2] = '"K"'
    lines[5] = ",".join(f)
    ctx.write_lines("roster.csv", lines)
    spells = ctx.lines("sick_leave.csv")
    head = spells[3].split(",")
    spells[3] = ",".join(head[:3] + ['"100"'])
    f = spells[10].split(",")
    spells[10] = ",".join(f[:3] + ["60"])
    # A quoted multi-line value in a spells field on line 5 shifts every later line.
    g = spells[4].split(",")
    spells[4] = ",".join(g[:3] + ['"10\n0"'])
    ctx.write_lines("sick_leave.csv", spells)


def _swap_roster_headers(ctx: Ctx) -> None:
    lines = ctx.lines("roster.csv")
    lines[0] = lines[0].replace("personnummer", "TMP").replace("unit_id", "personnummer")
    lines[0] = lines[0].replace("TMP", "unit_id")
    ctx.write_lines("roster.csv", lines)


def _control_file(ctx: Ctx, wrong_rows: bool) -> None:
    import hashlib

    rows = []
    for name in ("roster.csv", "sick_leave.csv"):
        data = (ctx.deliveries / name).read_bytes()
        n = len(data.decode().splitlines()) - 1
        rows.append(
            f"{name},{n - (1 if wrong_rows and name == 'sick_leave.csv' else 0)},"
            f"{hashlib.sha256(data).hexdigest()}"
        )
    (ctx.deliveries / "control.csv").write_text("file,rows,sha256\n" + "\n".join(rows) + "\n")
    ctx.plan.write_text(
        ctx.plan.read_text(encoding="utf-8") + "\nquality:\n  control_file: control.csv\n",
        encoding="utf-8",
    )


def _plan_sources_block_edit(ctx: Ctx, old: str, new: str) -> None:
    ctx.edit_plan(old, new)


CASES: list[Case] = [
    # The plan ------------------------------------------------------------------------------
    Case(
        "plan: duplicate YAML key (the last would win)",
        lambda c: c.edit_plan(
            '      amount: "1400000.00"\n',
            '      amount: "1400000.00"\n      amount: "10000000.00"\n',
        ),
        Error(r"payment\.rules\[1\]\.amount: duplicate key \(lines \d+ and \d+\)"),
    ),
    Case(
        "plan: YAML anchor and alias",
        lambda c: (
            c.edit_plan("  treated_units: [", "  treated_units: &t [")
            or c.edit_plan("disclosure:", "extra_units: *t\ndisclosure:")
        ),
        Error(r"anchor &t \(line \d+\) is not allowed.*alias \*t"),
    ),
    Case(
        "plan: misspelt outcome parameter",
        lambda c: c.edit_plan("parameters: {max_spell_day: 14}", "parameters: {max_spel_day: 14}"),
        Error(r"max_spel_day: unknown parameter.*did you mean 'max_spell_day'"),
    ),
    Case(
        "plan: non-integer outcome parameter",
        lambda c: c.edit_plan(
            "parameters: {max_spell_day: 14}", "parameters: {max_spell_day: 14.5}"
        ),
        Error(r"max_spell_day: expected integer, got float 14\.5"),
    ),
    Case(
        "plan: outcome parameter out of range",
        lambda c: c.edit_plan("parameters: {max_spell_day: 14}", "parameters: {max_spell_day: 0}"),
        Error(r"max_spell_day: must be between 1 and 365, got 0"),
    ),
    Case(
        "plan: amount too large for the money column",
        lambda c: c.edit_plan('amount: "1400000.00"', 'amount: "123456789012345678.00"'),
        Error(r"amount: '123456789012345678\.00' is not an amount.*at most 16 digits"),
    ),
    Case(
        "plan: amount with three decimals",
        lambda c: c.edit_plan('amount: "1400000.00"', 'amount: "1400000.005"'),
        Error(r"amount: '1400000\.005' is not an amount.*at most 2 decimals"),
    ),
    Case(
        "plan: payment target of zero",
        lambda c: c.edit_plan("target_relative_reduction: 0.12", "target_relative_reduction: 0"),
        Error(r"target_relative_reduction: must be greater than 0"),
    ),
    Case(
        "plan: source named like an internal table",
        lambda c: c.plan.write_text(
            c.plan.read_text()
            .replace("name: sick_leave", "name: deliveries")
            .replace("source: sick_leave", "source: deliveries")
        ),
        Error(r"sources\[1\]\.name: 'deliveries' is reserved for an internal table"),
    ),
    Case(
        "plan: source path leaves the deliveries folder",
        lambda c: c.edit_plan("path: roster.csv", "path: ../roster.csv"),
        Error(r"sources\[0\]\.path: '\.\./roster\.csv' has a '\.\.' component"),
    ),
    Case(
        "plan: absolute source path",
        lambda c: c.edit_plan("path: roster.csv", "path: /etc/passwd"),
        Error(r"sources\[0\]\.path: '/etc/passwd' is absolute"),
    ),
    Case(
        "plan: contract id unfit for a namespace",
        lambda c: c.edit_plan("id: demokommun-korttidssjuk-2025", "id: Demo Kommun/2025"),
        Error(r"contract\.id: 'Demo Kommun/2025' is not a valid contract id"),
    ),
    Case(
        "plan: unit listed twice",
        lambda c: c.edit_plan("HEMTJ-02, HEMTJ-03", "HEMTJ-02, HEMTJ-02"),
        Error(r"cohort\.treated_units: listed more than once: HEMTJ-02"),
    ),
    Case(
        "plan: unknown counterfactual parameter",
        lambda c: c.edit_plan(
            "parameters: {weight: exposure, scale: relative}",
            "parameters: {wieght: exposure, scale: relative}",
        ),
        Error(r"counterfactual\.parameters\.wieght: unknown parameter.*did you mean 'weight'"),
    ),
    Case(
        "plan: YAML syntax error",
        lambda c: c.edit_plan("cohort:\n", "cohort:\n  - [\n"),
        Error(r"line \d+, column \d+: not valid YAML"),
    ),
    Case(
        "plan: not UTF-8",
        lambda c: c.plan.write_bytes(
            c.plan.read_bytes().replace("Hälsopartner".encode(), "Hälsopartner".encode("latin-1"))
        ),
        Error(r"not UTF-8"),
    ),
    Case(
        "plan: two columns mapped to the same delivered column",
        lambda c: c.edit_plan("      sex: sex\n", "      sex: personnummer\n"),
        Error(r"columns\.sex: delivered column 'personnummer' is already mapped"),
    ),
    # Delivery files --------------------------------------------------------------------------
    Case(
        "file: missing",
        lambda c: (c.deliveries / "sick_leave.csv").unlink(),
        Error(r"no delivery file for source 'sick_leave'"),
    ),
    Case(
        "file: missing column",
        lambda c: c.write_lines(
            "sick_leave.csv",
            [c.lines("sick_leave.csv")[0].replace("extent", "omfattning")]
            + c.lines("sick_leave.csv")[1:],
        ),
        Error(r"missing column\(s\) extent"),
    ),
    Case(
        "file: wrong encoding",
        lambda c: (c.deliveries / "roster.csv").write_bytes(
            (c.deliveries / "roster.csv").read_bytes().replace(b",K,", b",\xc5,", 1)
        ),
        Error(r"line \d+.*(utf-8|UTF-8)"),
    ),
    Case(
        "file: ragged row",
        lambda c: c.edit_line("sick_leave.csv", 7, lambda f: f + ["extra"]),
        Error(r"line 8.*field"),
    ),
    Case(
        "file: duplicate header name",
        lambda c: c.write_lines(
            "sick_leave.csv",
            [c.lines("sick_leave.csv")[0].replace("spell_end", "spell_start")]
            + c.lines("sick_leave.csv")[1:],
        ),
        Error(r"duplicate.*spell_start"),
    ),
    Case(
        "file: header labels swapped (personnummer <-> unit_id)",
        _swap_roster_headers,
        Error(r"identity numbers"),
    ),
    Case(
        "file: no header row",
        lambda c: c.write_lines("roster.csv", c.lines("roster.csv")[1:]),
        Error(r"roster\.csv: line 1 does not look like a header row"),
    ),
    Case(
        "file: header only",
        lambda c: c.write_lines("sick_leave.csv", c.lines("sick_leave.csv")[:1]),
        Error(r"no data rows"),
    ),
    Case(
        "file: empty (0 bytes)",
        lambda c: (c.deliveries / "sick_leave.csv").write_bytes(b""),
        Error(r"sick_leave\.csv: the file is empty"),
    ),
    Case(
        "file: truncated inside a quoted field",
        lambda c: (c.deliveries / "sick_leave.csv").write_text(
            (c.deliveries / "sick_leave.csv").read_text() + '19550223-2563,2025-01-01,"2025-0'
        ),
        Error(r"line \d+: a quoted field .* is never closed"),
    ),
    Case(
        "file: symlink to a file outside the deliveries folder",
        _symlink_outside,
        Error(r"outside the deliveries folder"),
    ),
    Case(
        "file: semicolons where the plan says commas",
        lambda c: c.write_lines(
            "sick_leave.csv", [ln.replace(",", ";") for ln in c.lines("sick_leave.csv")]
        ),
        Error(r"missing column"),
    ),
    Case(
        "file: identity numbers in a column that should not hold them",
        lambda c: c.edit_line("roster.csv", 3, lambda f: f[:3] + [f[0]] + f[4:]),
        Error(r"identity numbers found in column\(s\).*unit_id"),
    ),
    # Rows ------------------------------------------------------------------------------------
    Case(
        "row: spell 0001-01-01 .. 9999-12-31",
        lambda c: _append_spell(c, [_spell_of(c, 1)[0], "0001-01-01", "9999-12-31", "100"]),
        Quarantined("date_out_of_range", 1),
    ),
    Case(
        "row: spell ending long after the plan",
        lambda c: _append_spell(c, [_spell_of(c, 1)[0], "2025-03-01", "2031-12-31", "100"]),
        Quarantined("date_out_of_range", 1),
    ),
    Case(
        "row: invalid personnummer checksum",
        lambda c: c.edit_line(
            "sick_leave.csv", 3, lambda f: [f[0][:-1] + str((int(f[0][-1]) + 1) % 10)] + f[1:]
        ),
        Quarantined("invalid_personnummer", 1),
    ),
    Case(
        "row: unknown extent",
        lambda c: c.edit_line("sick_leave.csv", 5, lambda f: f[:3] + ["60"]),
        Quarantined("unknown_extent", 1),
    ),
    Case(
        "row: end before start",
        lambda c: c.edit_line("sick_leave.csv", 5, lambda f: [f[0], f[2], "2021-12-31", f[3]]),
        Quarantined("end_before_start", 1),
    ),
    Case(
        "row: duplicated spell",
        lambda c: c.write_lines(
            "sick_leave.csv", c.lines("sick_leave.csv") + [c.lines("sick_leave.csv")[9]]
        ),
        Quarantined("duplicate_row", 1),
    ),
    Case(
        "row: spell of a person not in the roster",
        lambda c: _append_spell(c, [_pnr("19700101", "123"), "2024-02-01", "2024-02-03", "100"]),
        Quarantined("unknown_person", 1),
    ),
    Case(
        "row: date in another format",
        lambda c: c.edit_line(
            "sick_leave.csv", 6, lambda f: [f[0], f[1].replace("-", "/")] + f[2:]
        ),
        Quarantined("invalid_spell_start", 1),
    ),
    Case(
        "row: line numbers after a quoted field with a line break",
        _quoted_newline,
        Quarantined("unknown_extent", 2),
    ),
    Case(
        "row: too many bad rows (over the plan's quarantine limit)",
        lambda c: c.write_lines(
            "sick_leave.csv",
            [c.lines("sick_leave.csv")[0]]
            + [
                (ln.rsplit(",", 1)[0] + ",60" if i % 10 == 0 else ln)
                for i, ln in enumerate(c.lines("sick_leave.csv")[1:])
            ],
        ),
        Error(r"above the plan's limit"),
    ),
    # Cohort and measurement ------------------------------------------------------------------
    Case(
        "cohort: treated unit spelt differently in the roster",
        lambda c: c.write_lines(
            "roster.csv", [ln.replace(",HEMTJ-01,", ",hemtj-01,") for ln in c.lines("roster.csv")]
        ),
        Error(r"'HEMTJ-01' does not occur in the roster.*hemtj-01"),
    ),
    Case(
        "cohort: ... with unit_check: warn, listed in the report",
        lambda c: (
            c.write_lines(
                "roster.csv",
                [ln.replace(",HEMTJ-01,", ",hemtj-01,") for ln in c.lines("roster.csv")],
            )
            or c.edit_plan("  eligibility:", "  unit_check: warn\n  eligibility:")
        ),
        Warned(r"'?HEMTJ-01'? does not occur in the roster"),
    ),
    Case(
        "cohort: plan unit spelt differently from the roster",
        lambda c: c.edit_plan("SKOLA-03,", "Skola-03,"),
        Error(r"'Skola-03' does not occur in the roster"),
    ),
    Case(
        "measure: a single comparison unit", _one_comparison_unit, Error(r"'comparison' has 1 unit")
    ),
    Case(
        "measure: counterfactual of zero or below",
        _zero_counterfactual,
        Error(r"counterfactual level"),
    ),
    Case(
        "delivery: spells cut to 80 % of their rows",
        lambda c: _cut_spells(c, 0.8),
        Error(r"blocking data-quality.*sick_leave: periods_present: \d+ of 48 months have no row"),
    ),
    Case(
        "delivery: a changed re-delivery is named",
        lambda c: c.write_lines("sick_leave.csv", c.lines("sick_leave.csv")[:-3]),
        Warned(r"sick_leave/sick_leave\.csv changed since run \w+: rows \d+ -> \d+"),
        prior_run=True,
    ),
    Case(
        "delivery: a fifth of every month's spells missing against the earlier delivery",
        lambda c: c.write_lines(
            "sick_leave.csv",
            [c.lines("sick_leave.csv")[0]]
            + [ln for i, ln in enumerate(c.lines("sick_leave.csv")[1:]) if i % 5 != 0],
        ),
        Warned(r"volume_vs_history"),
        prior_run=True,
    ),
    Case(
        "delivery: sender's control file disagrees",
        lambda c: _control_file(c, wrong_rows=True),
        Error(r"control_file: .*sick_leave\.csv: \d+ data rows delivered, control\.csv says \d+"),
    ),
    Case(
        "delivery: rejected after a good run",
        lambda c: _cut_spells(c, 0.5),
        Error(r"blocking data-quality.*periods_present: 24 of 48 months have no row"),
        prior_run=True,
    ),
    # Keys and the warehouse ------------------------------------------------------------------
    Case(
        "key: too short",
        lambda c: c.env.update(UTFALL_PSEUDONYM_KEY="short"),
        Error(r"UTFALL_PSEUDONYM_KEY is 5 bytes long; .* at least 32 bytes"),
    ),
    Case(
        "key: empty key file",
        lambda c: (
            c.env.update(UTFALL_PSEUDONYM_KEY="")
            or c.warehouse.parent.mkdir(parents=True, exist_ok=True)
            or c.warehouse.with_suffix(".pseudonym.key").write_text("")
        ),
        Error(r"key file .*w\.pseudonym\.key is empty"),
    ),
    Case(
        "key: changed between runs",
        lambda c: c.env.update(UTFALL_PSEUDONYM_KEY=OTHER_KEY),
        Warned(r"pseudonymisation key changed since run"),
        prior_run=True,
    ),
    Case(
        "warehouse: truncated file",
        lambda c: c.warehouse.write_bytes(
            c.warehouse.read_bytes()[: c.warehouse.stat().st_size // 3]
        ),
        Error(r"damaged or truncated"),
        prior_run=True,
    ),
    Case(
        "warehouse: another layout",
        lambda c: (
            __import__("duckdb")
            .connect(str(c.warehouse))
            .execute("CREATE SCHEMA raw; CREATE TABLE raw.roster (x INT)")
            .close()
        ),
        Error(r"earlier utfall layout"),
        no_warehouse=True,
    ),
]


# --- the runner -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """Clean deliveries (no injected defects), small enough to run 50 times."""
    out = tmp_path_factory.mktemp("clean")
    simulate_deliveries(EXAMPLE_PLAN, out, employees=700, effect=0.12, defect_rate=0.0, seed=5)
    (out / "truth.json").unlink()
    return out


RESULTS: dict[str, dict] = {}


def _main(ctx: Ctx) -> tuple[int, str, str]:
    saved = dict(os.environ)
    os.environ.update({"UTFALL_PSEUDONYM_KEY": TEST_KEY, **ctx.env})
    if os.environ.get("UTFALL_PSEUDONYM_KEY") == "":
        del os.environ["UTFALL_PSEUDONYM_KEY"]
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(
                [
                    "run",
                    str(ctx.plan),
                    "--deliveries",
                    str(ctx.deliveries),
                    "--warehouse",
                    str(ctx.warehouse),
                    "--out",
                    str(ctx.out),
                ]
            )
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return code, out.getvalue(), err.getvalue()


def _world(root: Path) -> Ctx:
    return Ctx(root, root / "deliveries", root / "plan.yaml", root / "w.duckdb", root / "report")


def _prior_run(clean: Path, tmp_root: Path) -> Path:
    """One clean run, measured once per module: the world every `prior_run` case starts
    from (deliveries, plan, warehouse with its snapshot, report). The warehouse holds no
    path of its world, so a copy is the world that measuring it in place would give."""
    root = tmp_root / "_prior_run"
    if not root.exists():
        ctx = _world(root)
        root.mkdir(parents=True)
        shutil.copytree(clean, ctx.deliveries)
        shutil.copy(EXAMPLE_PLAN, ctx.plan)
        code, _, se = _main(ctx)
        assert code == 0, se
    return root


def outcome(case: Case, clean: Path, tmp_root: Path) -> dict:
    if case.name in RESULTS:
        return RESULTS[case.name]
    root = tmp_root / re.sub(r"\W+", "_", case.name)[:60]
    ctx = _world(root)
    prior = None
    if case.prior_run:
        shutil.copytree(_prior_run(clean, tmp_root), root, symlinks=True)
        prior = _published_runs(ctx.warehouse)
        assert len(prior) == 1, prior
    else:
        root.mkdir(parents=True)
        shutil.copytree(clean, ctx.deliveries)
        shutil.copy(EXAMPLE_PLAN, ctx.plan)
        if not case.no_warehouse:
            empty_warehouse_file(ctx.warehouse)
    before = _tree(ctx.out)
    case.setup(ctx)
    code, so, se = _main(ctx)
    RESULTS[case.name] = {
        "ctx": ctx,
        "code": code,
        "stdout": so,
        "stderr": se,
        "prior": prior,
        "report_before": before,
    }
    return RESULTS[case.name]


def _tree(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _published_runs(db: Path) -> list:
    if not db.exists():
        return []
    try:
        con = warehouse.connect(db, read_only=True)
    except Exception:  # noqa: BLE001 - a damaged file has no published run to speak of
        return []
    try:
        return con.sql("SELECT contract_id, run_id FROM ledger.published ORDER BY ALL").fetchall()
    except Exception:  # noqa: BLE001 - another layout
        return []
    finally:
        con.close()


def _data_rows(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as fh:
        return sum(1 for row in csv.reader(fh) if row) - 1


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Case, clean, tmp_path_factory):
    r = outcome(case, clean, tmp_path_factory.getbasetemp() / "catalogue")
    ctx: Ctx = r["ctx"]
    text = r["stdout"] + r["stderr"]
    assert "Traceback" not in text
    if isinstance(case.expect, Error):
        assert r["code"] == 2, text
        errors = [ln for ln in r["stderr"].splitlines() if ln.startswith("utfall: error:")]
        assert len(errors) == 1, r["stderr"]
        assert re.search(case.expect.pattern, r["stderr"], re.S), r["stderr"]
        # Nothing of this run is published, and the report folder is as it was.
        published = _published_runs(ctx.warehouse)
        # A truncated file may no longer open at all (which DuckDB block the cut hits
        # depends on the file's layout); then nothing in it can be published either.
        truncated = case.name == "warehouse: truncated file" and published == []
        assert published == (r["prior"] or []) or truncated
        assert _tree(ctx.out) == r["report_before"]
        return
    assert r["code"] == 0, text
    report = json.loads((ctx.out / "report.json").read_text(encoding="utf-8"))
    con = warehouse.connect(ctx.warehouse, read_only=True)
    try:
        recon = con.sql(
            "SELECT source, delivered, loaded, quarantined FROM quarantine.reconciliation"
        ).fetchall()
        for source, delivered, loaded, quarantined in recon:
            kind = {"roster": "employee_roster", "sick_leave": "sick_leave_spells"}[source]
            stored = [
                con.sql(f"SELECT count(*) FROM {t} WHERE source = ?", params=[source]).fetchall()[
                    0
                ][0]
                for t in (f"raw.{kind}", f"staging.{kind}", "quarantine.rows")
            ]
            file_rows = sum(_data_rows(p) for p in ctx.deliveries.glob(f"{source}*.csv"))
            assert [delivered, loaded, quarantined] == stored[:1] + stored[1:]
            assert delivered == loaded + quarantined == file_rows, (source, file_rows)
        if isinstance(case.expect, Quarantined):
            n = con.sql(
                "SELECT count(*) FROM quarantine.rows WHERE rule = ?", params=[case.expect.rule]
            ).fetchall()[0][0]
            assert n == case.expect.n
    finally:
        con.close()
    if isinstance(case.expect, Warned):
        assert any(re.search(case.expect.pattern, w) for w in report["warnings"]), report[
            "warnings"
        ]
        assert re.search(case.expect.pattern, r["stdout"] + r["stderr"]), text


def test_quarantine_line_is_the_physical_line(clean, tmp_path_factory):
    case = next(c for c in CASES if c.name.startswith("row: line numbers"))
    r = outcome(case, clean, tmp_path_factory.getbasetemp() / "catalogue")
    con = warehouse.connect(r["ctx"].warehouse, read_only=True)
    try:
        [(line,)] = con.sql(
            "SELECT line FROM quarantine.rows WHERE detail = 'extent=60'"
        ).fetchall()
    finally:
        con.close()
    physical = (r["ctx"].deliveries / "sick_leave.csv").read_text().splitlines()
    assert physical[line - 1].endswith(",60")


def test_catalogue_is_large_enough():
    assert len(CASES) >= 40


IDENTITY = re.compile(r"(?<![0-9A-Za-z])(\d{6}|\d{8})[-+]?\d{4}(?![0-9A-Za-z])")


def _identity_numbers(text: str) -> list[str]:
    import polars as pl

    found = [m.group(0) for m in IDENTITY.finditer(text)]
    if not found:
        return []
    checked = personnummer.check(pl.Series(found), 2025)
    return [f for f, p in zip(found, checked["problem"], strict=True) if p is None]


_SCANNED: dict[bytes, list[str]] = {}


def _identity_numbers_in(path: Path) -> list[str]:
    """`_identity_numbers` of a file's text, scanned once per distinct content: every package
    carries the same ~4 MB of Great Expectations' data docs assets (images, fonts)."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).digest()
    if digest not in _SCANNED:
        _SCANNED[digest] = _identity_numbers(data.decode("utf-8", errors="replace"))
    return _SCANNED[digest]


def _identity_numbers_in_tables(con) -> list[str]:
    """`table.column: number` for every identity number in any base table of `con`.

    Base tables hold every value; views only show their rows (the marts' derived values are
    scanned in tests/test_marts.py), and scanning ~30 views per case cost this suite
    minutes. One query for the warehouse, one scan per table (not per column): every column
    as text; only values that could hold a number (a superset of IDENTITY's matches) come
    back, with their table and column."""
    tables = con.sql(
        "SELECT schema_name, table_name, list(column_name ORDER BY column_index) "
        "FROM duckdb_columns() "
        "WHERE schema_name NOT IN ('information_schema', 'pg_catalog') "
        "AND (schema_name, table_name) IN (SELECT (schema_name, table_name) "
        "FROM duckdb_tables()) GROUP BY ALL"
    ).fetchall()
    scans = []
    for schema, table, columns in tables:
        names = ", ".join(f"'{c}'" for c in columns)
        texts = ", ".join(f'CAST("{c}" AS VARCHAR)' for c in columns)
        scans.append(
            f"SELECT '{schema}.{table}' AS t, unnest([{names}]) AS c, "
            f"unnest([{texts}]) AS v FROM {schema}.{table}"
        )
    if not scans:
        return []
    values = con.sql(
        f"SELECT DISTINCT t, c, v FROM ({' UNION ALL '.join(scans)}) "
        "WHERE regexp_matches(v, '[0-9]{6}[-+]?[0-9]{4}')"
    ).fetchall()
    return [f"{t}.{column}: {n}" for t, column, text in values for n in _identity_numbers(text)]


def test_no_identity_number_anywhere(clean, tmp_path_factory):
    """Every table's every column, every report file and every message of the catalogue."""
    tmp_root = tmp_path_factory.getbasetemp() / "catalogue"
    hits: list[str] = []
    for case in CASES:
        r = outcome(case, clean, tmp_root)
        ctx: Ctx = r["ctx"]
        hits += [f"{case.name}: message: {n}" for n in _identity_numbers(r["stdout"] + r["stderr"])]
        for p in ctx.out.rglob("*") if ctx.out.exists() else []:
            if p.is_file():
                hits += [f"{case.name}: {p.name}: {n}" for n in _identity_numbers_in(p)]
        if not ctx.warehouse.exists() or case.name == "warehouse: truncated file":
            continue
        if is_untouched_empty_warehouse(ctx.warehouse):
            continue  # the run stopped before opening its empty warehouse: no rows to scan
        try:
            con = warehouse.connect(ctx.warehouse, read_only=True)
        except Exception:  # noqa: BLE001 - the damaged-file cases
            continue
        try:
            hits += [f"{case.name}: {hit}" for hit in _identity_numbers_in_tables(con)]
        finally:
            con.close()
    assert len(RESULTS) >= 40
    assert not hits, hits[:20]
