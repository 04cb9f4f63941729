"""`utfall warehouse upgrade [--warehouse PATH]`: a warehouse of an earlier layout version
into the current one, its ledger carried over (utfall.warehouse.upgrade)."""

from __future__ import annotations

import argparse
from typing import Any


def _upgrade(args: argparse.Namespace) -> int:
    from pathlib import Path

    from utfall import warehouse
    from utfall.warehouse import layout
    from utfall.warehouse.upgrade import upgrade

    path = Path(args.warehouse) if args.warehouse else warehouse.default_path()
    done = upgrade(path)
    if done.kept_as is None:
        print(f"{path}: already layout version {layout.SCHEMA_VERSION}; nothing to do")
        return 0
    print(
        f"{path}: layout version {done.old_version} -> {layout.SCHEMA_VERSION}; "
        f"{done.entries} ledger entries carried over (runs, decisions, payments), verified"
    )
    print(f"the old file is kept, unchanged, as {done.kept_as}")
    print(
        "published runs are not carried over: measure each contract again "
        "(utfall run PLAN), which publishes on top of the carried ledger"
    )
    return 0


def register(subparsers: Any) -> None:
    wh = subparsers.add_parser("warehouse", help="maintain the warehouse file")
    kinds = wh.add_subparsers(dest="warehouse_command", required=True)
    p = kinds.add_parser(
        "upgrade",
        help="carry a warehouse of an earlier layout version into the current one, keeping "
        "its ledger (published runs, decisions, payments); the old file is kept beside it",
    )
    p.add_argument(
        "--warehouse",
        help="the warehouse file (default: $UTFALL_WAREHOUSE or data/warehouse.duckdb)",
    )
    p.set_defaults(func=_upgrade)
