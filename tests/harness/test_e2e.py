"""Real runs on tiny twins through the CLI: run + report end to end, resume, a SIGKILLed run, and the
process-pool and Ray executors (each worker's record lands in the store)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from ctrbench.cli import main
from ctrbench.harness.report import read_csv
from ctrbench.runs.store import RunStore
from ctrbench.search.registry import register_space
from ctrbench.search.spaces import Choice, LogUniform, SearchSpace

TINY = """
name: tiny
description: tiny end-to-end suite
defaults:
  train: {max_epochs: 1, batch_size: 500, eval_batch_size: 4096}
  dataset: {rows: 3000}
datasets: [{name: criteo_x1}, {name: amazonelectronics_x1}]
seeds: [0]
entries:
  - {name: lr, model: lr}
  - {name: dnn, model: dnn, params: {hidden_units: [16]}}
  - name: rs
    kind: searcher
    searcher: random
    search: {budget: 2, space: tiny_dcnv2}
    datasets: [criteo_x1]
measure: {warmup: 1, steps: 2}
"""

SEEDS3 = """
name: kill
defaults: {train: {max_epochs: 4, patience: 4, batch_size: 50}, dataset: {rows: 3000}}  # ~1 s a run: time to kill one
datasets: [{name: criteo_x1}]
seeds: [0, 1, 2]
entries: [{name: lr, model: lr}]
measure: {warmup: 1, steps: 2}
"""

# a small space, so the search's candidates train in about a second each
register_space(SearchSpace(
    name="tiny_dcnv2", model="dcnv2",
    params={"embedding_dim": Choice((4, 8)), "num_cross_layers": Choice((1, 2)),
            "parallel_dnn_hidden_units": Choice(((16,), (32, 16)))},
    train={"lr": LogUniform(1e-3, 1e-2)},
))


def cli(*argv) -> int:
    return main([str(a) for a in argv])


def test_cli_run_report_resume(write_suite, tmp_path, data_root, capsys):
    suite = write_suite(TINY)
    store_path, out = tmp_path / "runs.sqlite", tmp_path / "report"
    common = ("--store", store_path, "--data-root", data_root)
    assert cli("run", suite, *common) == 0
    text = capsys.readouterr().out
    assert "6 run(s) executed, 0 skipped" in text and "suite tiny" in text
    store = RunStore(store_path)
    recs = store.records()
    assert len(recs) == 6 and all(r.status == "ok" for r in recs), [(r.entry, r.error) for r in recs]
    for r in recs:
        assert 0.0 < r.auc < 1.0 and r.oracle_auc is not None and r.params > 0
        assert r.train_samples_per_s > 0 and r.flops_fwd_per_sample is not None and r.environment["cpu"]
        assert r.command.startswith("ctrbench run ") and r.threads >= 1 and r.device == "cpu"
    # report: table + CSVs + plot, each stating command and machine
    assert cli("report", suite, "--store", store_path, "--out", out) == 0
    table = (out / "table.md").read_text()
    assert "Runs produced by: `ctrbench run " in table and "Report produced by: `ctrbench report " in table
    assert f"Machine: {recs[0].environment['cpu']}" in table and "torch " in table and "git " in table
    assert "| criteo_x1 | rs | dcnv2 (best of 2" in table and "| amazonelectronics_x1 | dnn |" in table
    runs = read_csv(out / "runs.csv")
    assert len(runs) == 6 and set(runs["status"]) == {"ok"}
    assert (out / "runs.csv").read_text().startswith("# Runs produced by: `ctrbench run ")
    perf = read_csv(out / "perf_records.csv")
    assert len(perf) == 6 and {"param.embedding_dim", "train.batch_size", "sys.threads", "data.vocab_total",
                               "train_samples_per_s", "flops_train_per_sample"} <= set(perf.columns)
    summary = read_csv(out / "summary.csv")
    assert len(summary) == 5 and summary["auc_mean"].between(0, 1).all()
    assert (out / "auc_vs_flops.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # second run: everything skipped; --force --only lr re-runs lr as attempt 2
    assert cli("run", suite, *common) == 0
    assert "0 run(s) executed, 6 skipped" in capsys.readouterr().out
    assert cli("run", suite, *common, "--force", "--only", "lr") == 0
    assert "2 run(s) executed" in capsys.readouterr().out
    assert sorted(r.attempt for r in store.records()) == [1, 1, 1, 1, 2, 2]
    # dry run and models listing
    assert cli("run", suite, *common, "--dry-run") == 0
    assert "ok" in capsys.readouterr().out
    assert cli("models", "dcnv2") == 0
    assert "num_cross_layers" in capsys.readouterr().out


def test_sigkill_mid_suite_loses_no_finished_run(write_suite, tmp_path, data_root, capsys):
    suite = write_suite(SEEDS3)
    store_path = tmp_path / "runs.sqlite"
    common = ("--store", store_path, "--data-root", data_root)
    cli("run", suite, *common, "--dry-run")  # creates the store; builds nothing
    proc = subprocess.Popen([sys.executable, "-m", "ctrbench.cli", "run", str(suite), *map(str, common)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = RunStore(store_path)
    deadline = time.time() + 120
    try:
        while time.time() < deadline:  # wait until one run finished and the next one is running
            st = [r.status for r in store.records()]
            if st.count("ok") >= 1 and "running" in st:
                break
            assert proc.poll() is None, "the suite finished before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("no run started in time")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = {r.config_hash: r for r in store.records()}
    finished = {h for h, r in before.items() if r.status == "ok"}
    killed = {h for h, r in before.items() if r.status == "running"}
    assert finished and len(killed) == 1 and all(before[h].pid == proc.pid for h in killed)
    # the next start marks the killed run interrupted and runs it (and the rest), skipping the finished ones
    assert cli("run", suite, *common) == 0
    text = capsys.readouterr().out
    assert f"{3 - len(finished)} run(s) executed, {len(finished)} skipped" in text and "1 interrupted run(s) recovered" in text
    after = {r.config_hash: r for r in store.records()}
    assert len(after) == 3 and all(r.status == "ok" for r in after.values())
    assert all(after[h].attempt == 2 for h in killed) and all(after[h].attempt == 1 for h in finished)
    assert all(after[h].finished_at == before[h].finished_at for h in finished)


@pytest.mark.parametrize("executor", ["process", "ray"])
def test_parallel_executors(executor, write_suite, tmp_path, data_root, capsys):
    if executor == "ray":
        pytest.importorskip("ray", reason="the Ray executor is an optional extra: pip install 'ctrbench[ray]'")
    suite = write_suite(SEEDS3.replace("[0, 1, 2]", "[0, 1]"))
    store_path = tmp_path / "runs.sqlite"
    assert cli("run", suite, "--store", store_path, "--data-root", data_root, "--executor", executor,
               "--workers", 2) == 0
    assert "2 run(s) executed" in capsys.readouterr().out
    recs = RunStore(store_path).records()
    assert len(recs) == 2 and all(r.status == "ok" and 0 < r.auc < 1 for r in recs)
    if executor == "process":  # each worker claimed and wrote its own record
        ran_in = {r.pid for r in recs}
    else:  # the driver claims and writes; the work ran in Ray worker processes
        ran_in = {r.extra["worker_pid"] for r in recs}
        assert {r.pid for r in recs} == {os.getpid()}
    assert os.getpid() not in ran_in
