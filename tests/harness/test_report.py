"""Reports from stored runs: the aggregates are the mean ± std over seeds of exactly this suite's runs."""
from __future__ import annotations

import statistics

import pytest

from ctrbench.harness.report import collect, read_csv, summarize, write_report
from ctrbench.harness.runner import run_suite
from ctrbench.harness.suite import load_suite
from ctrbench.runs.store import RunStore

SUITE = """
name: rep
description: report check
defaults: {train: {max_epochs: 1}, dataset: {rows: 3000}}
datasets: [{name: criteo_x1}]
seeds: [0, 1, 2]
entries:
  - {name: lr, model: lr}
  - {name: fm, model: fm}
  - {name: rs, kind: searcher, searcher: random, search: {budget: 3}, seeds: [0, 1]}
"""


def test_summary_is_mean_and_std_over_seeds(write_suite, tmp_path, fake_execute):
    suite = load_suite(write_suite(SUITE))
    store = RunStore(tmp_path / "runs.sqlite")
    run_suite(suite, store, command="ctrbench run rep.yaml")
    rows = {r["entry"]: r for r in summarize(collect(suite, store))}
    lr = [r.auc for r in store.records() if r.entry == "lr"]
    assert len(lr) == 3
    assert rows["lr"]["auc_mean"] == pytest.approx(statistics.fmean(lr))
    assert rows["lr"]["auc_std"] == pytest.approx(statistics.stdev(lr))
    # a search contributes its best candidate (by validation metric) per seed
    best = []
    for seed in (0, 1):
        cands = [r for r in store.records() if r.entry == "rs" and r.seed == seed]
        assert len(cands) == 3
        best.append(max(cands, key=lambda r: r.valid_auc).auc)
    assert rows["rs"]["runs"] == 2 and rows["rs"]["auc_mean"] == pytest.approx(statistics.fmean(best))
    assert "best of 3" in rows["rs"]["model"]
    # a store that holds other suites' runs and misses some of this one's: only this suite's, and the gap is said
    other = load_suite(write_suite(SUITE.replace("name: rep", "name: other").replace("seeds: [0, 1, 2]", "seeds: [0, 1, 2, 3]"),
                                   "other.yaml"))
    paths = write_report(other, store, tmp_path / "out", "ctrbench report other.yaml")
    table = paths["table"].read_text()
    assert "**2 run(s) of this suite are not in the store yet**" in table
    assert "Runs produced by: `ctrbench run rep.yaml`" in table and "Machine: fake, 1 cores" in table
    runs = read_csv(paths["runs"])
    assert len(runs) == 6 + 6 and set(runs["kind"]) == {"model", "candidate"}


def test_auc_vs_flops_plot_is_log_scaled_and_every_entry_has_its_own_legend_style(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ctrbench.harness import report

    names = [f"model{i}" for i in range(12)]
    rows = [{"dataset": ds, "entry": n, "auc_mean": 0.78 + 0.001 * i, "auc_std": 0.001, "oracle_auc_mean": 0.8,
             "flops_fwd_per_sample_mean": 0.0 if n == "model0" else 100.0 * 3 ** i}
            for ds in ("a", "b") for i, n in enumerate(names)]
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to inspect it
    report.plot_auc_vs_flops(rows, tmp_path / "p.png", "t")
    assert (tmp_path / "p.png").stat().st_size > 0
    fig = figures[0]
    for ax in fig.axes:
        assert ax.get_xscale() == "log" and ax.get_xlim()[0] > 0  # real FLOPs: no symlog, no decades below 1
        assert any("1 entries without FLOPs not shown" in t.get_text() for t in ax.texts)  # model0 has 0 FLOPs
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == names[1:] + ["oracle AUC"]  # every drawn entry named once, across both panels
    styles = report._entry_styles([f"e{i}" for i in range(100)])
    assert len(set(styles.values())) == 100  # no two entries share colour and marker
