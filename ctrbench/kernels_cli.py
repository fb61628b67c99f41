"""`ctrbench kernels info | verify | bench`: what the kernel library can run here, whether it is right, how fast.

verify and bench iterate ctrbench.kernels.ops.OPS; each op package provides verify.verify(device) and
bench.bench(device, quick) (see kernels/ops.py). bench writes <out>/<op>_<device>.csv, <out>/run_<device>.json
(the command and the machine) and regenerates <out>/README.md from every run recorded in <out>.
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import importlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from ctrbench.kernels import backend_status
from ctrbench.kernels.ops import OPS

DEVICES = ("cpu", "cuda")


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("kernels", help="fused kernels: backends available here, correctness, timings")
    sub = p.add_subparsers(dest="kernels_command", required=True, metavar="SUBCOMMAND")

    info = sub.add_parser("info", help="backends x availability x reason, and the ops")
    info.add_argument("--device", choices=DEVICES, default=None, help="only this device (default: both)")
    info.set_defaults(func=cmd_info)

    verify = sub.add_parser("verify", help="every available backend against the reference; exit 1 on a failure")
    _add_device_and_ops(verify)
    verify.set_defaults(func=cmd_verify)

    bench = sub.add_parser("bench", help="time every backend; write CSVs and a markdown README")
    _add_device_and_ops(bench)
    bench.add_argument("--quick", action="store_true", help="fewer shapes (a smoke run)")
    bench.add_argument("--out", default="results/kernels", help="output folder (default: results/kernels)")
    bench.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    bench.set_defaults(func=cmd_bench)


def _console() -> Console:
    """Rich console; wide when writing to a file or pipe (CI logs), so tables are not folded."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    return console


def _add_device_and_ops(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=DEVICES, default=None, help="default: cuda when available, else cpu")
    p.add_argument("--ops", nargs="+", choices=OPS, default=list(OPS), metavar="OP", help=f"subset of {', '.join(OPS)}")


def _device(args) -> str:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("ctrbench kernels: --device cuda, but torch.cuda.is_available() is False")
    return device


def op_module(op: str, part: str):
    """ctrbench.kernels.<op>.<part>; a missing one is an error naming both (never skipped)."""
    name = f"ctrbench.kernels.{op}.{part}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name or name.startswith(f"{exc.name}."):
            raise RuntimeError(f"op {op!r} (listed in ctrbench.kernels.ops.OPS) has no {part} module {name}") from exc
        raise


# ---------------------------------------------------------------- info


def cmd_info(args) -> int:
    console = _console()
    table = Table(title="ctrbench.kernels backends")
    for col in ("device", "backend", "available", "why"):
        table.add_column(col)
    for device in [args.device] if args.device else DEVICES:
        for s in backend_status(device):
            table.add_row(device, s.name, "[green]yes[/]" if s.available else "[red]no[/]", s.reason)
    console.print(table)
    console.print(f"ops: {', '.join(OPS)}  (backend choice: argument > $CTRBENCH_BACKEND > auto)")
    return 0


# ---------------------------------------------------------------- verify


def _fmt(value) -> str:
    if value is True:
        return "[green]ok[/]"
    if value is False:
        return "[bold red]FAIL[/]"
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _print_rows(console: Console, title: str, rows: list[dict]) -> None:
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    table = Table(title=title)
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c)
            cells.append("[yellow]not run[/]" if c == "ok" and v is None else _fmt(v))
        table.add_row(*cells)
    console.print(table)


def cmd_verify(args) -> int:
    device = _device(args)
    console = _console()
    failed = 0
    for op in args.ops:
        rows = op_module(op, "verify").verify(device)
        _print_rows(console, f"{op} on {device}", rows)
        failed += sum(1 for r in rows if r.get("ok") is False)
    if device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        console.print("note: triton was not checked on the CPU; run with TRITON_INTERPRET=1 to check it in the interpreter")
    console.print(f"[bold red]{failed} failed[/]" if failed else "[green]all checks passed[/]")
    return 1 if failed else 0


# ---------------------------------------------------------------- bench


def machine_info(device: str) -> dict:
    """The machine a result came from: CPU model, cores, threads, GPU, versions, git revision, date."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if device == "cuda" else "none used",
        "torch": torch.__version__,
        "triton": triton_version,
        "python": platform.python_version(),
        "git": _git_revision(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _git_revision() -> str:
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True,
                               text=True, check=True, timeout=10).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _command(args, device: str) -> str:
    parts = ["ctrbench", "kernels", "bench", "--device", device, "--ops", *args.ops]
    if args.quick:
        parts.append("--quick")
    if args.threads is not None:
        parts += ["--threads", str(args.threads)]
    parts += ["--out", str(args.out)]
    return " ".join(parts)


def cmd_bench(args) -> int:
    device = _device(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    console = _console()
    for op in args.ops:
        rows = op_module(op, "bench").bench(device, quick=args.quick)
        if not rows:
            raise RuntimeError(f"op {op!r}: bench returned no rows")
        write_csv(out / f"{op}_{device}.csv", rows)
        _print_rows(console, f"{op} on {device}", rows)
    run = {"command": _command(args, device), "device": device, "ops": list(args.ops), "machine": machine_info(device)}
    (out / f"run_{device}.json").write_text(json.dumps(run, indent=2) + "\n")
    (out / "README.md").write_text(render_readme(out))
    console.print(f"wrote {out}/README.md and {', '.join(f'{op}_{device}.csv' for op in args.ops)}")
    return 0


def write_csv(path: Path, rows: list[dict]) -> None:
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _markdown_table(rows: list[dict]) -> tuple[str, dict]:
    """Rows -> a markdown table of the columns that vary, plus the columns that are constant."""
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    constant = {c: rows[0].get(c) for c in columns if len({str(r.get(c)) for r in rows}) == 1}
    varying = [c for c in columns if c not in constant]
    lines = ["| " + " | ".join(varying) + " |", "|" + "---|" * len(varying)]
    for r in rows:
        lines.append("| " + " | ".join("" if r.get(c) in (None, "") else str(r.get(c)) for c in varying) + " |")
    return "\n".join(lines), constant


def render_readme(out: Path) -> str:
    """README.md for every run recorded in `out` (run_<device>.json + <op>_<device>.csv)."""
    parts = ["# Kernel benchmarks", "",
             "Written by `ctrbench kernels bench`; one section per (device, op). Times are milliseconds "
             "(p50, with p20/p80); GBps counts the bytes the op must move; frac_of_copy compares it to a large "
             "tensor copy timed in the same run; x_vs_* are speed-ups over the reference (eager / torch.compile).", ""]
    for run_file in sorted(out.glob("run_*.json")):
        run = json.loads(run_file.read_text())
        m = run["machine"]
        parts += [f"## {run['device']}", "", f"Command: `{run['command']}`", "",
                  f"Machine: {m['cpu']}, {m['cores']} cores, torch threads {m['torch_threads']}, GPU {m['gpu']}; "
                  f"torch {m['torch']}, triton {m['triton']}, Python {m['python']}; git {m['git']}; {m['date']}.", ""]
        for op in run["ops"]:
            path = out / f"{op}_{run['device']}.csv"
            if not path.exists():
                continue
            with open(path, newline="") as fh:
                rows = list(csv.DictReader(fh))
            table, constant = _markdown_table(rows)
            parts += [f"### {op}", ""]
            if constant:
                parts += ["Same in every row: " + ", ".join(f"{k}={v}" for k, v in constant.items()), ""]
            parts += [table, ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    """`python -m ctrbench.kernels_cli info|verify|bench ...`: the kernels commands without the rest of the CLI,
    which imports the data and harness layers (pydantic, pyarrow) that a bare GPU box may not have."""
    parser = argparse.ArgumentParser(prog="python -m ctrbench.kernels_cli",
                                     description="ctrbench kernels: info, verify, bench (see `ctrbench kernels -h`)")
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub)
    args = parser.parse_args(["kernels", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
