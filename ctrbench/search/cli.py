"""`ctrbench nasbench export`: CTR-NAS-Bench's CSV tables (bench_table.py) from a run store."""
from __future__ import annotations

import argparse

from rich.console import Console

from ctrbench.search.bench_table import export


def _export(args: argparse.Namespace) -> int:
    written = export(args.store, args.out, suite=args.suite)
    console = Console()
    for name, rows in written.items():
        console.print(f"{args.out}/{name}: {rows} rows")
    return 0


def add_commands(sub) -> None:
    nasbench = sub.add_parser("nasbench", help="CTR-NAS-Bench: export the benchmark tables from a run store")
    cmds = nasbench.add_subparsers(dest="nasbench_command", required=True, metavar="ACTION")
    p = cmds.add_parser("export", help="runs.csv, one lookup table per space x dataset, seed_agreement.csv",
                        description=export.__doc__)
    p.add_argument("--store", required=True, help="run store SQLite file (e.g. results/nasbench_small/runs.sqlite)")
    p.add_argument("--out", required=True, help="folder for the CSV files (e.g. results/nasbench)")
    p.add_argument("--suite", default=None, help="only this suite's runs (default: every run in the store)")
    p.set_defaults(func=_export)
