"""`utfall export indigo REPORT_DIR [--out DIR]`: a report in the INDIGO data standard."""

from __future__ import annotations

import argparse
from typing import Any


def _indigo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from utfall import indigo

    paths = indigo.export(Path(args.report_dir), Path(args.out) if args.out else None)
    for path in paths.values():
        print(path)
    print(f"INDIGO data standard {indigo.STANDARD_VERSION} (project model)")
    return 0


def register(subparsers: Any) -> None:
    export = subparsers.add_parser("export", help="export a report to another data standard")
    kinds = export.add_subparsers(dest="export_kind", required=True)
    p = kinds.add_parser(
        "indigo",
        help="the report's contract, outcome metrics, pricing, results and payments in the "
        "GO Lab INDIGO data standard (JSON and CSV)",
    )
    p.add_argument("report_dir", help="a report folder (holding report.json)")
    p.add_argument("--out", help="output folder (default: REPORT_DIR/indigo)")
    p.set_defaults(func=_indigo)
