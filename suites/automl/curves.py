"""What both issue-17 comparisons share: best-so-far curves of a search's evaluations (the incumbent is chosen
on the searcher's validation value, as a searcher would report it; the curve carries another column of it, e.g.
its test metric) and the plot of their mean and spread over search seeds per searcher."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def incumbents(values: list[float | None], higher_is_better: bool) -> list[int | None]:
    """For each prefix of `values` (None = failed), the position of the best so far (ties to the earlier)."""
    out, best = [], None
    for i, v in enumerate(values):
        if v is not None and np.isfinite(v) and (best is None or (v > values[best] if higher_is_better
                                                                   else v < values[best])):
            best = i
        out.append(best)
    return out


def plot_curves(frame: pd.DataFrame, column: str, ylabel: str, title: str, path: Path, baseline=None,
                log=False) -> None:
    """Mean (line) and min-max over seeds (band) of `column` against `trial`, one line per `searcher`."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, g in frame.groupby("searcher", sort=False):
        per = g.pivot_table(index="trial", columns="seed", values=column)
        ax.plot(per.index, per.mean(axis=1), label=f"{name} (n={per.shape[1]} seeds)")
        ax.fill_between(per.index, per.min(axis=1), per.max(axis=1), alpha=0.15)
    if baseline is not None:
        ax.axhline(baseline[1], color="k", ls="--", lw=1, label=baseline[0])
    if log:
        ax.set_yscale("symlog", linthresh=1e-4)
    ax.set_xlabel("trials (candidates evaluated)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def mean_std(x) -> str:
    x = np.asarray(list(x), dtype=np.float64)
    return f"{x.mean():.4g} ± {x.std(ddof=1) if len(x) > 1 else 0.0:.2g}"
