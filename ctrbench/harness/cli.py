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
is a SQLite file (not committed); `ctrbench report` turns it into tables. Executors: local (in this
process, with epoch/batch progress), process (a pool of --workers processes, each writing its own
records) and ray (Ray tasks; --address joins a running cluster). Ctrl-C or SIGTERM stops the suite:
unfinished runs are marked interrupted and the same command resumes them.

Where results go (store and report), unless --store / --out say otherwise: RESULTS/<suite name>/, where
RESULTS is the results/ folder beside the suite's folder for a suite in a folder named suites/ (so
`ctrbench run quick` from the checkout writes ./results/quick/, into the repository), and the results/
folder beside the suite file for any other suite file (/tmp/my.yaml -> /tmp/results/<name>/).
"""

REPORT_HELP = """Write table.md, runs.csv, summary.csv, auc_vs_flops.png and perf_records.csv from the run store:
mean ± std over seeds per dataset × entry, with the command and machine behind them. Store and output
default to RESULTS/<suite name>/ as `ctrbench run --help` explains. The store is only read (a missing
store is an error, never a new one), and a store with none of the suite's runs writes nothing."""

SUITE_SUFFIXES = (".yaml", ".yml")


def resolve_suite_path(name: str) -> Path:
    """A suite file path, or a bare name looked up as suites/<name>.yaml (or .yml)."""
    p = Path(name)
    if p.is_file():
        return p
    if p.suffix in SUITE_SUFFIXES or len(p.parts) > 1:
        raise ConfigError(f"no suite file {name!r}", file=name)
    for suffix in SUITE_SUFFIXES:
        cand = Path("suites") / f"{name}{suffix}"
        if cand.is_file():
            return cand
    known = sorted(q.stem for q in Path("suites").glob("*.y*ml")) if Path("suites").is_dir() else []
    valid = f"; suites here: {', '.join(known)}" if known else " (and there is no suites/ folder here)"
    raise ConfigError(f"no suite file {name!r} nor suites/{name}.yaml{valid}", file=name)


def results_dir(suite_path: str | Path, suite_name: str) -> Path:
    """Default store/report folder: RESULTS/<suite name>, RESULTS = results/ beside the suite's folder for a
    suite in a folder named suites/ (the checkout's results/), else results/ beside the suite file."""
    folder = Path(suite_path).parent
    base = folder.parent if folder.name == "suites" else folder
    return base / "results" / suite_name


def entry_names(text: str) -> list[str]:
    """--only's value: comma-separated entry names, none empty."""
    names = [s.strip() for s in text.split(",")]
    if not any(names):
        raise argparse.ArgumentTypeError(f"no entry name in {text!r}; give comma-separated entry names, e.g. lr,dnn")
    if not all(names):
        raise argparse.ArgumentTypeError(f"empty entry name in {text!r}; give comma-separated entry names, e.g. lr,dnn")
    return names


def seed_list(text: str) -> list[int]:
    """--seeds' value: comma-separated distinct non-negative integers."""
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"invalid seeds {text!r}; give comma-separated non-negative integers, "
                                         "e.g. 0,1,2")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seed listed twice in {text!r}")
    return seeds


def _command(args, sub: str) -> str:
    """The command line that reproduces this invocation (non-default options only)."""
    parts = ["ctrbench", sub, str(args.suite)]
    for opt in ("executor", "workers", "address", "data_root", "store", "only", "seeds", "out"):
        v = getattr(args, opt, None)
        if isinstance(v, list):
            v = ",".join(map(str, v))
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
    p.add_argument("--workers", type=int, default=None,
                   help="processes (process) or CPUs (local ray); default: all cores")
    p.add_argument("--address", default=None, help="ray: address of a running cluster (default: start a local one)")
    p.add_argument("--data-root", default=None,
                   help="dataset caches (default: $CTRBENCH_DATA_ROOT or ~/.cache/ctrbench)")
    p.add_argument("--store", default=None, help="run store SQLite file (default: RESULTS/<suite>/runs.sqlite, "
                   "see above)")
    p.add_argument("--only", type=entry_names, default=None, help="comma-separated entry names to run (default: all)")
    p.add_argument("--seeds", type=seed_list, default=None,
                   help="comma-separated seeds to run, e.g. 0,1,2, in place of the suite's and its entries' seeds")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their stored status; run nothing")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="write the tables and plot of a suite", description=REPORT_HELP)
    p.add_argument("suite", help="suite YAML file, or a name in suites/")
    p.add_argument("--store", default=None, help="run store to read (default: RESULTS/<suite>/runs.sqlite)")
    p.add_argument("--out", default=None, help="output folder (default: RESULTS/<suite>/)")
    p.add_argument("--seeds", type=seed_list, default=None, help="report these seeds (as run with `run --seeds`)")
    p.add_argument("--data-root", default=None, help="dataset caches, for suites with real data (as for `run`)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("models", help="list the registered models and their hyper-parameters",
                       description="The models a suite entry can name (`model:`), with every Params field, "
                                   "its type, default and meaning (a suite entry's `params:`).")
    p.add_argument("name", nargs="?", help="show only this model")
    p.set_defaults(func=cmd_models)


def _load(args):
    """The suite (restricted by --only, with --seeds), its default results folder and its store's path."""
    from ctrbench.harness.suite import load_suite

    path = resolve_suite_path(args.suite)
    suite = load_suite(path, seeds=getattr(args, "seeds", None)).with_caches(args.data_root)
    if getattr(args, "only", None):
        suite = suite.only(args.only)
    results = results_dir(path, suite.name)
    return suite, results, Path(args.store) if args.store else results / "runs.sqlite"


def cmd_run(args) -> int:
    from rich.console import Console

    from ctrbench.harness.runner import run_suite

    from ctrbench.runs.store import RunStore

    console = Console(stderr=False)
    suite, _, store_path = _load(args)
    if args.dry_run:
        return _dry_run(console, suite, RunStore(store_path, create=False) if store_path.exists() else None,
                        store_path)
    store = RunStore(store_path)
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
    busy = f"{result.busy} left to the other process(es) running them, " if result.busy else ""
    console.print(f"suite {suite.name}: {result.executed} run(s) executed, {result.skipped} skipped (finished before), "
                  f"{busy}{len(result.recovered)} interrupted run(s) recovered, {len(failed)} failed; "
                  f"{wall:.1f} s; store {store.path}  (of {suite.planned_runs} planned)", soft_wrap=True)
    for r in failed:
        console.print(f"[red]failed[/red] {r.dataset}/{r.entry}/seed{r.seed}: {(r.error or '').splitlines()[0]}",
                      soft_wrap=True)
    return 1 if failed else 0


def _dry_run(console, suite, store, store_path: Path) -> int:
    """List the runs with their stored status (the store is only read; a missing one means nothing ran yet)."""
    from rich.table import Table

    t = Table(title=f"suite {suite.name}: {len(suite.runs)} runs, {len(suite.searches)} searches; store {store_path}"
              + ("" if store is not None else " (none yet)"))
    for c in ("dataset", "entry", "model", "seed", "config hash", "stored status"):
        t.add_column(c)
    for r in suite.runs:
        rec = store.get(r.config_hash) if store is not None else None
        t.add_row(r.dataset, r.entry, r.model, str(r.seed), r.config_hash, _status_line(store, rec))
    for s in suite.searches:
        summ = store.get_search(s.search_id) if store is not None else None
        t.add_row(s.dataset.name, s.entry, f"{s.model} ({s.searcher}, budget {s.options.get('budget')})", str(s.seed),
                  s.search_id, (summ or {}).get("status") or "-")
    console.print(t)
    return 0


def _status_line(store, rec) -> str:
    """A record's status as a dry run says it: a "running" row whose process is gone will be recovered."""
    if rec is None:
        return "-"
    if rec.status != "running":
        return rec.status
    if store.is_live(rec):
        return f"running (pid {rec.pid} on {rec.host})"
    return "interrupted — will be recovered"


def cmd_report(args) -> int:
    from ctrbench.harness.report import write_report

    from ctrbench.runs.store import RunStore

    suite, results, store_path = _load(args)
    out = Path(args.out) if args.out else results
    paths = write_report(suite, RunStore(store_path, create=False), out, _command(args, "report"))
    for k, p in paths.items():
        print(f"{k:8s} {p}")
    return 0


MODEL_NOTES = (  # printed by `ctrbench models` above the tables, one paragraph each
    "Id 0 is padding only: its embedding is 0 and gets no gradient; a sequence pools by the mean of its "
    "non-padding ids.",
    "Numeric fields: the value times a learnable vector per field, initialised N(0, embedding_init_std) like the "
    "tables (FuxiCTR initialises it Xavier-normal, std ~0.4-1, which swamps short runs); values go in raw unless "
    "numeric_norm.",
    "Defaults that differ from BARS. BARS tunes each model per dataset (its DNN on Criteo_x1: hidden_units "
    "[400, 400, 400], net_dropout 0.1, batch_size 4096, patience 2, embedding_regularizer 1e-5, and FuxiCTR clips "
    "gradients at norm 10). ctrbench uses one default everywhere: hidden_units [400, 400], net_dropout 0.1, and in "
    "`train:` (ctrbench.train.TrainConfig) batch_size 2048, patience 1, embedding_l2 0, grad_clip None (no "
    "clipping). Set them in a suite to match a BARS config.",
    "train_seconds (per run) is the wall time of the training loop: every epoch's batches with their loading, "
    "the validation evaluations and best-weight copies; not opening the data, building the model, the test "
    "evaluation or the cost measurement.",
    "train_samples_per_s is batch_size / the median time of a training step (forward, backward, optimizer step) "
    "over the suite's `measure.steps` timed steps after `measure.warmup` untimed ones, on batches already in "
    "memory and a copy of the trained model: the model's speed, not the loader's. infer_samples_per_s likewise "
    "times the forward alone.",
)


def cmd_models(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from ctrbench.models.registry import MODELS, get_model_class

    get_model_class(args.name or next(iter(MODELS), "lr"))  # loads the built-ins; unknown name lists the valid ones
    names = [args.name] if args.name else sorted(MODELS)
    console = Console()
    console.print("Conventions of every model (each param's meaning is in its table):", highlight=False)
    for note in MODEL_NOTES:
        console.print(f"- {note}", highlight=False, markup=False)
    console.print()
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
