"""Terminal output of `ctrbench run`: rich progress bars (runs, epochs, batches, ETA) and the summary table."""
from __future__ import annotations

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichBars, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

from ctrbench.harness.runner import Progress
from ctrbench.runs.records import RunRecord, RunSpec


class _FitCallbacks:
    """The `callbacks` object `fit` calls: moves the epoch and batch bars."""

    def __init__(self, owner: "RichProgress", spec: RunSpec):
        self.owner, self.spec = owner, spec

    def on_epoch_start(self, epoch: int, n_batches: int) -> None:
        bars = self.owner.bars
        if epoch == 0:
            bars.reset(self.owner.epoch_task, total=self.spec.train.get("max_epochs") or 1, description="  epochs",
                       visible=True)
        bars.reset(self.owner.batch_task, total=n_batches, description=f"  epoch {epoch + 1} batches", visible=True)

    def on_batch_end(self, step: int, loss: float) -> None:
        self.owner.bars.update(self.owner.batch_task, advance=1, description=f"  batches (loss {loss:.4f})")

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        self.owner.bars.advance(self.owner.epoch_task)
        auc = metrics.get("auc")
        if auc is not None:
            self.owner.bars.update(self.owner.epoch_task, description=f"  epochs (valid AUC {auc:.4f})")


class RichProgress(Progress):
    """Three bars: runs of the suite, epochs of the current run, batches of the current epoch."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console()
        self.bars = RichBars(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                             console=self.console, transient=False)
        self.run_task = self.epoch_task = self.batch_task = None

    def __enter__(self):
        self.bars.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bars.__exit__(*exc)

    def suite_start(self, total_runs: int) -> None:
        self.run_task = self.bars.add_task("runs", total=total_runs)
        self.epoch_task = self.bars.add_task("  epochs", total=1, visible=False)
        self.batch_task = self.bars.add_task("  batches", total=1, visible=False)

    def run_start(self, spec: RunSpec) -> None:
        self.bars.update(self.run_task, description=f"runs: {spec.label}")

    def run_end(self, spec: RunSpec, record: RunRecord, outcome: str) -> None:
        if self.run_task is None:
            return
        self.bars.advance(self.run_task)
        if outcome == "run":
            auc = f"AUC {record.auc:.4f}" if record.auc is not None else ""
            gap = f" (oracle {record.oracle_auc:.4f})" if record.oracle_auc is not None else ""
            self.bars.console.log(f"{spec.label}: {record.status} {auc}{gap} in {record.wall_seconds or 0:.1f}s")

    def fit_callbacks(self, spec: RunSpec):
        return _FitCallbacks(self, spec)


def summary_table(suite, store) -> Table:
    """The suite's results so far, as report.summarize computes them."""
    from ctrbench.harness.report import _fmt, _si, collect, summarize

    rows = summarize(collect(suite, store))
    t = Table(title=f"suite {suite.name}: mean ± std over seeds (test)", title_justify="left")
    for c in ("dataset", "entry", "ok/runs", "AUC", "gap to oracle", "logloss", "params", "FLOPs/sample", "train/s"):
        t.add_column(c, justify="left" if c in ("dataset", "entry") else "right")
    for r in rows:
        t.add_row(r["dataset"], r["entry"], f"{r['ok']}/{r['runs']}", _fmt(r["auc_mean"], r["auc_std"]),
                  _fmt(r["oracle_gap_mean"], r["oracle_gap_std"]), _fmt(r["logloss_mean"], r["logloss_std"]),
                  _si(r["params_mean"]), _si(r["flops_fwd_per_sample_mean"]), _si(r["train_samples_per_s_mean"]))
    return t
