"""`ctrbench run`, `ctrbench report` and `ctrbench models`: run a suite (with rich progress), report it,
and list the registered models with their hyper-parameters."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ctrbench.errors import ConfigError

RUN_HELP = """Run every entry × dataset × seed of a suite (and its searches), storing one record per run.

A run's identity is the hash of its config, so running a suite again skips the runs that finished
(status ok or nan) and re-runs the failed and interrupted ones; --force re-runs everything. The store
is a SQLite file (default results/<suite>/runs.sqlite, not committed); `ctrbench report` turns it into
tables. Executors: local (in this process, with epoch/batch progress), process (a pool of --workers
processes, each writing its own records) and ray (Ray tasks; --address joins a running cluster).
"""

REPORT_HELP = """Write results/<suite>/table.md, runs.csv, summary.csv, auc_vs_flops.png and perf_records.csv
from the run store: mean ± std over seeds per dataset × entry, with the command and machine behind them."""


def resolve_suite_path(name: str) -> Path:
    """A suite file path, or a bare name looked up as suites/<name>.yaml."""
    p = Path(name)
    if p.exists():
        return p
    for cand in (Path("suites") / f"{name}.yaml", Path("suites") / f"{name}.yml"):
        if cand.exists():
            return cand
    raise ConfigError(f"no suite file {name!r} (nor suites/{name}.yaml)", file=name)


def _default_dir(suite_name: str) -> Path:
    return Path("results") / suite_name


def _command(args, sub: str) -> str:
    """The command line that reproduces this invocation (non-default options only)."""
    parts = ["ctrbench", sub, str(args.suite)]
    for opt in ("executor", "workers", "address", "data_root", "store", "only", "out"):
        v = getattr(args, opt, None)
        if v is not None and not (opt == "executor" and v == "local"):
            parts += [f"--{opt.replace('_', '-')}", str(v)]
    if getattr(args, "force", False):
        parts.append("--force")
    return " ".join(parts)


def add_commands(sub) -> None:
    p = sub.add_parser("run", help="run a suite (resumable)", description=RUN_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suite", help="suite YAML file, or a name in suites/ (e.g. quick)")
    p.add_argument("--force", action="store_true", help="re-run runs that already finished")
    p.add_argument("--executor", choices=("local", "process", "ray"), default="local",
                   help="where runs execute (default: local, in this process)")
    p.add_argument("--workers", type=int, default=None, help="processes (process) or CPUs (local ray); default: all cores")
    p.add_argument("--address", default=None, help="ray: address of a running cluster (default: start a local one)")
    p.add_argument("--data-root", default=None, help="dataset caches (default: $CTRBENCH_DATA_ROOT or ~/.cache/ctrbench)")
    p.add_argument("--store", default=None, help="run store SQLite file (default: results/<suite>/runs.sqlite)")
    p.add_argument("--only", default=None, help="comma-separated entry names to run (default: all)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their stored status; run nothing")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="write the tables and plot of a suite", description=REPORT_HELP)
    p.add_argument("suite", help="suite YAML file, or a name in suites/")
    p.add_argument("--store", default=None, help="run store (default: results/<suite>/runs.sqlite)")
    p.add_argument("--out", default=None, help="output folder (default: results/<suite>/)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("models", help="list the registered models and their hyper-parameters",
                       description="The models a suite entry can name (`model:`), with every Params field, "
                                   "its type, default and meaning (a suite entry's `params:`).")
    p.add_argument("name", nargs="?", help="show only this model")
    p.set_defaults(func=cmd_models)


def _load(args):
    from ctrbench.harness.store import RunStore
    from ctrbench.harness.suite import load_suite

    suite = load_suite(resolve_suite_path(args.suite))
    if getattr(args, "only", None):
        suite = suite.only([s.strip() for s in args.only.split(",") if s.strip()])
    store = RunStore(args.store or _default_dir(suite.name) / "runs.sqlite")
    return suite, store


def cmd_run(args) -> int:
    from rich.console import Console

    from ctrbench.harness.runner import planned_runs, run_suite

    console = Console(stderr=False)
    suite, store = _load(args)
    if args.dry_run:
        return _dry_run(console, suite, store)
    t0 = time.perf_counter()
    from ctrbench.harness.progress import RichProgress

    with RichProgress(console) as progress:
        result = run_suite(suite, store, executor=args.executor, workers=args.workers, address=args.address,
                           data_root=args.data_root, force=args.force, command=_command(args, "run"),
                           progress=progress)
    wall = time.perf_counter() - t0
    from ctrbench.harness.progress import summary_table

    console.print(summary_table(suite, store))
    failed = [r for r in result.records if r.status == "failed"]
    console.print(f"suite {suite.name}: {result.executed} run(s) executed, {result.skipped} skipped (finished before), "
                  f"{len(result.recovered)} interrupted run(s) recovered, {len(failed)} failed; "
                  f"{wall:.1f} s; store {store.path}  (of {planned_runs(suite)} planned)", soft_wrap=True)
    for r in failed:
        console.print(f"[red]failed[/red] {r.dataset}/{r.entry}/seed{r.seed}: {(r.error or '').splitlines()[0]}",
                      soft_wrap=True)
    return 1 if failed else 0


def _dry_run(console, suite, store) -> int:
    from rich.table import Table

    t = Table(title=f"suite {suite.name}: {len(suite.runs)} runs, {len(suite.searches)} searches")
    for c in ("dataset", "entry", "model", "seed", "config hash", "stored status"):
        t.add_column(c)
    for r in suite.runs:
        rec = store.get(r.config_hash)
        t.add_row(r.dataset, r.entry, r.model, str(r.seed), r.config_hash, rec.status if rec else "-")
    for s in suite.searches:
        summ = store.get_search(s.search_id)
        t.add_row(s.dataset.name, s.entry, f"{s.model} ({s.searcher}, budget {s.options.get('budget')})", str(s.seed),
                  s.search_id, (summ or {}).get("status") or "-")
    console.print(t)
    return 0


def cmd_report(args) -> int:
    from ctrbench.harness.report import write_report

    suite, store = _load(args)
    out = Path(args.out) if args.out else _default_dir(suite.name)
    paths = write_report(suite, store, out, _command(args, "report"))
    for k, p in paths.items():
        print(f"{k:8s} {p}")
    return 0


def cmd_models(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from ctrbench.models.registry import MODELS, get_model_class

    get_model_class(args.name or next(iter(MODELS), "lr"))  # loads the built-ins; unknown name lists the valid ones
    names = [args.name] if args.name else sorted(MODELS)
    console = Console()
    for name in names:
        cls = MODELS[name]
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        t = Table(title=f"{name} — {doc}", title_justify="left")
        for c in ("param", "type", "default", "meaning"):
            t.add_column(c)
        for fname, f in cls.Params.model_fields.items():
            default = f.default_factory() if f.default_factory is not None else f.default
            t.add_row(fname, _type_name(f.annotation), repr(default), f.description or "")
        console.print(t)
    return 0


def _type_name(t) -> str:
    s = getattr(t, "__name__", None) if getattr(t, "__args__", None) is None else None
    return s or str(t).replace("typing.", "")


if __name__ == "__main__":  # pragma: no cover
    from ctrbench.cli import main

    sys.exit(main())
