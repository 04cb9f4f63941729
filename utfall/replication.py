"""The replication package: a report folder a validator can re-run without us.

A published report folder *is* the package. Beside `report.json`, `report.html` and
`data_docs/` it holds

* `inputs/staging_<kind>.parquet`: the run's validated rows of every source kind, with
  pseudonyms (`person_id`), never personnummer; Parquet written with fixed settings
  (`PARQUET_SETTINGS`) and rows in a fixed order, so the same run gives the same bytes;
* `plan/<plan file>`: the plan exactly as the run read it (its hash is the report's);
* `context.json`: what the report records but cannot be recomputed from validated rows
  (delivered files and their sha256, reconciliation, quarantine counts by rule, cohort
  units, data-quality results, notes); `verify` checks it against the inputs where it can;
* `manifest.json`: `files` (the report files, as `report.write_report` lists them) and
  `package_files` (the sha256 of every file above), package version and the previous
  version with what changed, code version (package version, git commit and whether the
  checkout had uncommitted changes), the locked
  package versions of `requirements.lock`, and the pseudonymisation key's fingerprint.

Files added later by the validator carry their own signatures and are not in the
manifest: `signatures/*.json`, `decisions/*.json` and `payment_instruction.{csv,json}`.
`verify_package` recomputes every number with `recompute` and names each difference.

Versions: a package whose report.json differs from the contract's last published one is a
new version (the last +1, with a summary of what changed); the same bytes keep the version.
A replaced package that was signed, decided or of another version is kept, unchanged, in
`<reports>/<contract>.versions/v<N>/`: an issued report is never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

import utfall
from utfall import report
from utfall.errors import UserError, WarehouseError
from utfall.plan import GENERIC_KINDS, Plan, load_plan
from utfall.signing import canonical, sha256_hex
from utfall.warehouse import REPO_ROOT, chain
from utfall.warehouse.runs import Run

PACKAGE_FORMAT = 1
MANIFEST = "manifest.json"
CONTEXT = "context.json"
#: Written by pyarrow with these settings only, so the bytes depend on the rows alone.
PARQUET_SETTINGS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": True,
    "data_page_size": 1 << 20,
    "row_group_size": 1 << 20,
    "version": "2.6",
}
#: Files the validator adds after the manifest; each is checked on its own.
_POST_MANIFEST = re.compile(
    r"^(signatures/[^/]+\.json|decisions/[^/]+\.json|payment_instruction\.(csv|json))$"
)
MAX_CHANGES = 40


class PackageError(UserError):
    """A path that is not a replication package, or one that cannot be read."""


def manifest_digest(manifest: dict[str, Any]) -> str:
    """The sha256 of the manifest's canonical bytes: what signatures and the ledger name."""
    return sha256_hex(canonical(manifest))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def package_files(root: Path) -> list[str]:
    """Every regular file under `root`, as sorted POSIX paths relative to it."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def locked_packages(lock: Path | None = None) -> dict[str, str]:
    """name -> version of every `name==version` line of requirements.lock ({} if absent)."""
    lock = lock or REPO_ROOT / "requirements.lock"
    try:
        text = lock.read_text(encoding="utf-8")
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)", line.strip())
        if m:
            out[m.group(1).lower()] = m.group(2)
    return dict(sorted(out.items()))


def git_dirty() -> bool | None:
    """True when tracked files of the code's checkout differ from its commit (the commit
    alone then does not name the code that ran); None outside a git checkout."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=Path(__file__).resolve().parent,
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip())


def _same_text(path: Path, plan: Plan) -> bool:
    """Whether `path` holds the very text `plan` was loaded from, read as load_plan reads
    it (it would load to the same plan and hash; parsing it again cost ~10 ms a run)."""
    if plan.text_sha256 is None:
        return False
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False  # load_plan then says what is wrong with the file
    return hashlib.sha256(text.encode("utf-8")).hexdigest() == plan.text_sha256


def write_parquet(frame: pl.DataFrame, path: Path) -> None:
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(frame.to_arrow(), path, **PARQUET_SETTINGS)


def input_kinds(plan: Plan) -> list[str]:
    """The source kinds whose validated rows the computation reads, in plan order (and
    `values`, the long table of the generic kinds' plan-named columns, when they are used)."""
    from utfall.warehouse.layout import PERSON_KINDS_WITH_VALUES

    kinds = list(dict.fromkeys(s["kind"] for s in plan.sources))
    if any(k in GENERIC_KINDS or k in PERSON_KINDS_WITH_VALUES for k in kinds):
        kinds.append("values")
    return kinds


@dataclass
class Package:
    """A package written into a temporary folder, not yet in place or in the ledger."""

    root: Path
    manifest: dict[str, Any]
    digest: str
    previous_version: int | None
    ledger_payload: dict[str, Any] = field(default_factory=dict)

    def record(self, con: duckdb.DuckDBPyConnection) -> None:
        """The ledger entry of the publication; called inside the publish transaction."""
        chain.append_in_transaction(con, "run", self.manifest["contract_id"], self.ledger_payload)


def write_package(
    con: duckdb.DuckDBPyConnection,
    plan: Plan,
    run: Run,
    root: Path,
    parts: dict[str, Any],
    current: Path,
) -> Package:
    """Add inputs, plan, context and the full manifest to the report folder `root` (the
    not-yet-published folder that `report.write_report` filled). `current` is where the
    contract's published package lives, for the version and its change summary."""
    from utfall import warehouse

    for kind in input_kinds(plan):
        rows = warehouse.read_table(
            con,
            f"SELECT * EXCLUDE (contract_id, run_id) FROM work.staging_{kind} "
            "WHERE contract_id = $contract_id AND run_id = $run_id ORDER BY source, _file, _line",
            run.scope,
        )
        write_parquet(rows, root / "inputs" / f"staging_{kind}.parquet")
    plan_bytes = Path(plan.path).read_bytes()
    plan_copy = root / "plan" / Path(plan.path).name
    plan_copy.parent.mkdir(parents=True, exist_ok=True)
    plan_copy.write_bytes(plan_bytes)
    if not _same_text(plan_copy, plan) and load_plan(plan_copy).hash != plan.hash:
        raise WarehouseError(
            f"{plan.path}: the plan file changed during run {run.run_id} (its hash is no "
            f"longer {plan.hash}); re-run with the plan as it is now"
        )
    (root / CONTEXT).write_text(report.dumps(parts["context"]), encoding="utf-8")
    normalise_data_docs(root / "data_docs")

    report_sha = sha256_file(root / "report.json")
    prior = _last_publication(con, plan.contract_id)
    if prior is None:
        version, previous = 1, None
    else:
        same = prior["report_sha256"] == report_sha
        version = prior["version"] if same else prior["version"] + 1
        previous = {k: prior[k] for k in ("version", "report_sha256", "manifest_sha256", "run_id")}
    changes = (
        []
        if prior is None or prior["report_sha256"] == report_sha
        else describe_changes(current, prior, json.loads((root / "report.json").read_text()))
    )
    base = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    manifest = {
        **base,
        "package_format": PACKAGE_FORMAT,
        "contract_id": plan.contract_id,
        "version": version,
        "previous": previous,
        "changes": changes,
        "code_version": utfall.__version__,
        "git_commit": base.get("git_commit") or report.git_commit(),
        "git_dirty": git_dirty(),
        "key_fingerprint": parts["context"]["notes"].get("key_fingerprint"),
        "locked_packages": locked_packages(),
        "parquet": {k: v for k, v in PARQUET_SETTINGS.items()},
        "inputs_tables": {k: f"inputs/staging_{k}.parquet" for k in input_kinds(plan)},
        "plan_file": plan_copy.relative_to(root).as_posix(),
        "package_files": {
            rel: sha256_file(root / rel) for rel in package_files(root) if rel != MANIFEST
        },
    }
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text(report.dumps(manifest), encoding="utf-8")
    tmp.replace(root / MANIFEST)
    digest = manifest_digest(manifest)
    payload = {
        "run_id": run.run_id,
        "plan_hash": plan.hash,
        "version": version,
        "report_sha256": report_sha,
        "manifest_sha256": digest,
        "payment_total": parts["payment"].get("total"),
        "currency": parts["payment"].get("currency"),
        "inputs": [{"file": i["file"], "sha256": i["sha256"]} for i in parts["context"]["inputs"]],
    }
    return Package(root, manifest, digest, None if prior is None else prior["version"], payload)


_GX_LOGO_QUERY = re.compile(r"(logo-long\.png)\?d=[0-9TZ.]+&(?:amp;)?dataContextId=[0-9a-f-]+")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def normalise_data_docs(folder: Path) -> None:
    """Make Great Expectations' Data Docs depend on the results alone: GX puts the clock
    and a random context id in its logo's URL and random UUIDs in element ids. The URL
    loses its query; each UUID becomes `id-<n>` by order of first appearance in its file
    (so an anchor and its target still match)."""
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*.html")):
        text = path.read_text(encoding="utf-8")
        text = _GX_LOGO_QUERY.sub(r"\1", text)
        path.write_text(_number_uuids(text), encoding="utf-8")


def _number_uuids(text: str) -> str:
    ids: dict[str, str] = {}
    return _UUID.sub(lambda m: ids.setdefault(m.group(0), f"id-{len(ids) + 1:04d}"), text)


def _last_publication(con: duckdb.DuckDBPyConnection, contract_id: str) -> dict[str, Any] | None:
    chain.ensure(con)
    runs_ = [e for e in chain.entries(con, contract_id) if e.kind == "run"]
    return runs_[-1].payload if runs_ else None


def describe_changes(current: Path, prior: dict[str, Any], new_report: dict[str, Any]) -> list[str]:
    """What differs from the previous version's report.json, one line per number or
    input file (at most MAX_CHANGES lines, then a count of the rest)."""
    path = Path(current) / "report.json"
    try:
        old_bytes = path.read_bytes()
    except OSError:
        return [f"previous version {prior['version']}: its report.json is not at {path}"]
    if hashlib.sha256(old_bytes).hexdigest() != prior["report_sha256"]:
        return [f"previous version {prior['version']}: {path} is not the report the ledger holds"]
    old = json.loads(old_bytes)
    lines = []
    old_inputs = {i["file"]: i["sha256"] for i in old.get("inputs", [])}
    new_inputs = {i["file"]: i["sha256"] for i in new_report.get("inputs", [])}
    for f in sorted(old_inputs.keys() | new_inputs.keys()):
        if old_inputs.get(f) != new_inputs.get(f):
            was, now = old_inputs.get(f), new_inputs.get(f)
            lines.append(
                f"input {f}: "
                + ("added" if was is None else "removed" if now is None else "re-delivered")
                + ("" if was is None or now is None else f" (sha256 {was[:12]} -> {now[:12]})")
            )
    diffs = [d for d in json_diff(old, new_report) if not d[0].startswith("$.inputs")]
    # The numbers a reader looks for first, then everything else in document order.
    diffs.sort(key=lambda d: not _HEADLINE.match(d[0]))
    lines += [f"{p}: {a} -> {b}" for p, a, b in diffs]
    if len(lines) > MAX_CHANGES:
        lines = lines[:MAX_CHANGES] + [f"... and {len(lines) - MAX_CHANGES} more differences"]
    return lines


_HEADLINE = re.compile(
    r"^\$\.(effects\[\d+\]\.(estimate|std_error|ci_low|ci_high|relative_estimate|"
    r"relative_ci_low|relative_ci_high|n_treated|n_comparison)|payment\.total|"
    r"reconciliation\[\d+\]\.(delivered|loaded|quarantined))$"
)


def json_diff(expected: Any, found: Any, path: str = "$") -> list[tuple[str, str, str]]:
    """(JSON path, expected, found) for every leaf that differs, in document order."""
    if isinstance(expected, dict) and isinstance(found, dict):
        out = []
        for k in list(expected) + [k for k in found if k not in expected]:
            sub = f"{path}.{k}"
            if k not in found:
                out.append((sub, _short(expected[k]), "(missing)"))
            elif k not in expected:
                out.append((sub, "(absent)", _short(found[k])))
            else:
                out += json_diff(expected[k], found[k], sub)
        return out
    if isinstance(expected, list) and isinstance(found, list):
        out = []
        for i in range(max(len(expected), len(found))):
            sub = f"{path}[{i}]"
            if i >= len(found):
                out.append((sub, _short(expected[i]), "(missing)"))
            elif i >= len(expected):
                out.append((sub, "(absent)", _short(found[i])))
            else:
                out += json_diff(expected[i], found[i], sub)
        return out
    if type(expected) is not type(found) or expected != found:
        return [(path, _short(expected), _short(found))]
    return []


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def retire(old: Path, current: Path, new_version: int) -> Path | None:
    """Dispose of the package `old` that `current` replaced: kept under
    `<contract>.versions/v<N>` if it was signed, decided or of another version (an issued
    report is immutable); deleted only when it was an undecided copy of the same version."""
    try:
        manifest = json.loads((old / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}
    version = manifest.get("version")
    issued = any(
        (old / d).is_dir() and any((old / d).iterdir()) for d in ("signatures", "decisions")
    )
    if version is None or (version == new_version and not issued):
        shutil.rmtree(old)
        return None
    archive = current.parent / f"{current.name}.versions"
    archive.mkdir(parents=True, exist_ok=True)
    target = archive / f"v{version}"
    if target.exists():
        target = archive / f"v{version}.{manifest.get('run_id') or 'unknown'}"
    old.replace(target)
    return target


# ----------------------------------------------------------------------------- verify


@dataclass
class Verification:
    package: Path
    problems: list[str]
    info: list[str]
    manifest: dict[str, Any] | None = None
    digest: str | None = None
    #: Fingerprints of the keys whose signature of the manifest is valid.
    signers: list[str] = field(default_factory=list)
    #: The recomputed payment proposal and the package's plan (None if not recomputed).
    payment: dict[str, Any] | None = None
    plan: Plan | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def load_manifest(package: Path) -> dict[str, Any]:
    path = Path(package) / MANIFEST
    if not Path(package).is_dir():
        raise PackageError(f"{package}: not a directory (a replication package is a folder)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PackageError(f"{path}: missing; this is not a replication package") from None
    except (OSError, ValueError) as exc:
        raise PackageError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("package_format") != PACKAGE_FORMAT:
        raise PackageError(
            f"{path}: package_format {data.get('package_format')!r}, this utfall reads "
            f"{PACKAGE_FORMAT} (a report written before replication packages? re-run it)"
        )
    if not isinstance(data.get("package_files"), dict):
        raise PackageError(f"{path}: has no `package_files` table; not a replication package")
    return data


def verify_package(
    package: Path,
    *,
    con: duckdb.DuckDBPyConnection | None = None,
    progress: Callable[[str], None] | None = None,
) -> Verification:
    """Check every file's hash, recompute every number from the package's inputs with the
    domain core alone, check signatures and decisions, and (with `con`) the ledger.
    Each problem names the file, JSON path or ledger entry, expected vs found."""
    from utfall import decisions, recompute

    say = progress or (lambda _msg: None)
    root = Path(package)
    manifest = load_manifest(root)
    digest = manifest_digest(manifest)
    v = Verification(root, [], [], manifest, digest)
    problems, info = v.problems, v.info
    listed: dict[str, str] = manifest["package_files"]
    present = set(package_files(root))
    for rel, sha in sorted(listed.items()):
        if rel not in present:
            problems.append(f"{rel}: listed in manifest.json but missing (removed)")
        elif sha256_file(root / rel) != sha:
            problems.append(
                f"{rel}: sha256 {sha256_file(root / rel)[:16]}..., manifest.json says "
                f"{sha[:16]}... (changed after the report was written)"
            )
    for rel in sorted(present - set(listed) - {MANIFEST}):
        if not _POST_MANIFEST.match(rel):
            problems.append(f"{rel}: not in manifest.json (added after the report was written)")
    for rel, sha in sorted((manifest.get("files") or {}).items()):
        if listed.get(rel) != sha:
            problems.append(
                f"manifest.json $.files.{rel}: {str(sha)[:16]}..., but $.package_files says "
                f"{str(listed.get(rel))[:16]}..."
            )
    say(f"files: {len(listed)} listed, {len(problems)} problem(s)")

    plan_rel = manifest.get("plan_file", "")
    plan = None
    try:
        plan = load_plan(root / plan_rel)
    except UserError as exc:
        problems.append(f"{plan_rel or 'plan'}: not a usable plan: {exc}")
    if plan is not None and plan.hash != manifest.get("plan_hash"):
        problems.append(
            f"{plan_rel}: plan hash {plan.hash}, manifest.json $.plan_hash says "
            f"{manifest.get('plan_hash')} (the plan was changed)"
        )
    found_report = _read_json(root / "report.json", problems)
    context = _read_json(root / CONTEXT, problems)
    if plan is not None and context is not None:
        staging = {}
        for kind, rel in sorted((manifest.get("inputs_tables") or {}).items()):
            try:
                staging[kind] = pl.read_parquet(root / rel)
            except Exception as exc:  # noqa: BLE001 - any unreadable input is a finding
                problems.append(f"{rel}: not readable Parquet ({type(exc).__name__})")
        if len(staging) == len(manifest.get("inputs_tables") or {}):
            _check_context(context, staging, problems)
            try:
                rec = recompute.recompute(plan, staging, context)
            except UserError as exc:
                problems.append(f"recomputation failed: {exc}")
            except Exception as exc:  # noqa: BLE001 - e.g. a column missing from edited input
                problems.append(f"recomputation failed: {type(exc).__name__}: {exc}")
            else:
                say("recomputed the outcome panel, effects, payment and report")
                v.payment, v.plan = rec.payment, plan
                _compare_report(rec.document, found_report, root, problems, info)
    if found_report is not None and found_report.get("plan", {}).get("hash") != manifest.get(
        "plan_hash"
    ):
        problems.append(
            f"report.json $.plan.hash: {found_report.get('plan', {}).get('hash')}, "
            f"manifest.json $.plan_hash: {manifest.get('plan_hash')}"
        )
    decisions.check_package_signatures(root, manifest, digest, problems, info, v.signers)
    if con is not None:
        decisions.check_ledger(con, root, manifest, digest, problems, info)
    return v


def _read_json(path: Path, problems: list[str]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None  # reported as a removed file
    except (OSError, ValueError) as exc:
        problems.append(f"{path.name}: not readable JSON ({exc})")
        return None


def _check_context(
    context: dict[str, Any], staging: dict[str, pl.DataFrame], problems: list[str]
) -> None:
    """The recorded reconciliation against the rows in the package: loaded = rows."""
    loaded: dict[str, int] = {}
    for kind, frame in staging.items():
        if kind == "values":  # one row per delivered row and variable, not per row
            continue
        if "source" in frame.columns:
            for name, n in frame.group_by("source").len().iter_rows():
                loaded[name] = n
    for i, r in enumerate(context.get("reconciliation") or []):
        n = loaded.get(r.get("source"), 0)
        if r.get("loaded") != n:
            problems.append(
                f"context.json $.reconciliation[{i}].loaded: {r.get('loaded')}, but the "
                f"package's inputs hold {n} valid rows of source {r.get('source')!r}"
            )


def _compare_report(
    expected: dict[str, Any],
    found: dict[str, Any] | None,
    root: Path,
    problems: list[str],
    info: list[str],
) -> None:
    expected_text = report.dumps(expected)
    if found is not None:
        diffs = json_diff(json.loads(expected_text), found)
        for p, a, b in diffs:
            problems.append(f"report.json {p}: recomputed {a}, found {b}")
        raw = (root / "report.json").read_bytes()
        if not diffs and raw != expected_text.encode("utf-8"):
            problems.append(
                "report.json: the same numbers, but the bytes differ from the recomputed file"
            )
        if not diffs:
            info.append("report.json: every number matches the recomputation")
    html_path = root / "report.html"
    if html_path.exists():
        expected_html = report.render_html(expected)
        found_html = html_path.read_text(encoding="utf-8", errors="replace")
        if expected_html != found_html:
            problems.append("report.html: " + _first_line_difference(expected_html, found_html))
        else:
            info.append("report.html: identical to the HTML rendered from the recomputation")


def _first_line_difference(expected: str, found: str) -> str:
    """Where two texts first differ: line, column and the text around it in both."""
    a, b = expected.splitlines(), found.splitlines()
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else "(end of file)"
        y = b[i] if i < len(b) else "(end of file)"
        if x != y:
            col = next((j for j, (c, d) in enumerate(zip(x, y, strict=False)) if c != d), None)
            col = min(len(x), len(y)) if col is None else col
            start = max(0, col - 20)
            return (
                f"differs from the HTML rendered from the recomputed report at line {i + 1}, "
                f"column {col + 1}: expected {x[start : col + 40]!r}, found {y[start : col + 40]!r}"
            )
    return "differs from the recomputed HTML (line endings or trailing bytes)"
