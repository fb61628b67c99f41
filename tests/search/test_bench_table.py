"""CTR-NAS-Bench export: a searched suite's trainings become runs.csv (one row per training, hashed by the
space), one lookup table per space x dataset (seed-0 metrics, seed count, mean and spread), and the seed-to-seed
rank agreement; the lookup evaluator reads the exported table back."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import ctrbench.harness.runner as runner
from ctrbench.cli import main
from ctrbench.harness.runner import run_suite
from ctrbench.harness.suite import load_suite
from ctrbench.runs.store import RunStore
from ctrbench.search.bench_table import seed_rank_agreement
from ctrbench.search.base import Candidate
from ctrbench.search.evaluators.lookup import LookupEvaluator, read_table
from ctrbench.search.registry import get_space
from harness_search_driver import fake_execute

SUITE = """
name: bench
defaults: {train: {max_epochs: 1}, dataset: {rows: 2000}}
datasets: [{name: criteo_x1}]
seeds: [0]
entries:
  - {name: small, kind: searcher, searcher: random,
     search: {space: nasrec_small, space_options: {scale: 0.125}, budget: 6, seed: 0}}
  - {name: small_seeds, kind: searcher, searcher: random, seeds: [1, 2],
     search: {space: nasrec_small, space_options: {scale: 0.125}, budget: 4, seed: 0}}
"""

pytestmark = pytest.mark.usefixtures("data_root_env")


def test_export_writes_the_runs_the_lookup_table_and_the_seed_agreement(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "execute_run", fake_execute([]))
    (tmp_path / "s.yaml").write_text(SUITE)
    result = run_suite(load_suite(tmp_path / "s.yaml"), RunStore(tmp_path / "runs.sqlite"))
    assert main(["nasbench", "export", "--store", str(tmp_path / "runs.sqlite"), "--out", str(tmp_path / "b")]) == 0
    runs = pd.read_csv(tmp_path / "b" / "runs.csv", dtype={"point_hash": str})
    assert len(runs) == 14 and set(runs["seed"]) == {0, 1, 2}
    space = get_space("nasrec_small", scale=0.125)
    by_record = {(space.hash(r.config["params"]["point"]), r.seed): r.auc for r in result.records}
    assert {(h, s): a for h, s, a in zip(runs["point_hash"], runs["seed"], runs["auc"])} == pytest.approx(by_record)
    table = pd.read_csv(tmp_path / "b" / "nasrec_small_criteo_x1.csv", dtype={"point_hash": str})
    assert len(table) == 6 and sorted(table["n_seeds"]) == [1, 1, 3, 3, 3, 3]
    three = table[table["n_seeds"] == 3].iloc[0]
    aucs = [by_record[(three["point_hash"], s)] for s in (0, 1, 2)]
    assert three["auc"] == pytest.approx(aucs[0]) and three["auc_seed_mean"] == pytest.approx(sum(aucs) / 3)
    assert space.from_json(three["point"]) is not None and space.hash(space.from_json(three["point"])) == \
        three["point_hash"]
    agreement = pd.read_csv(tmp_path / "b" / "seed_agreement.csv")
    assert list(zip(agreement["seed_a"], agreement["seed_b"])) == [(0, 1), (0, 2), (1, 2)]
    assert set(agreement["points"]) == {4}
    looked_up = read_table(tmp_path / "b" / "nasrec_small_criteo_x1.csv", "auc")
    assert {h: row["auc"] for h, row in looked_up.items()} == pytest.approx(dict(zip(table["point_hash"],
                                                                                      table["auc"])))


def test_seed_agreement_on_hand_made_rankings():
    runs = pd.DataFrame({"point_hash": list("abcd") * 2, "seed": [0] * 4 + [1] * 4,
                         "auc": [0.1, 0.2, 0.3, 0.4, 0.1, 0.2, 0.4, 0.3]})
    row = seed_rank_agreement(runs).iloc[0]
    assert row["points"] == 4 and row["kendall_tau"] == pytest.approx(4 / 6)
    assert row["spearman_rho"] == pytest.approx(0.8)


def test_lookup_answers_with_the_validation_column_and_keeps_the_test_metric(tmp_path):
    space = get_space("nasrec_small", scale=0.125)
    point = space.sample(np.random.default_rng(0))
    (tmp_path / "t.csv").write_text(f"point_hash,auc,valid_auc\n{space.hash(point)},0.75,0.71\n")
    ev = LookupEvaluator(space, read_table(tmp_path / "t.csv", "auc"), "auc")
    (e,) = ev([Candidate(0, point=point)])
    assert e.value == pytest.approx(0.71) and e.metrics["auc"] == pytest.approx(0.75)
    (tmp_path / "u.csv").write_text(f"point_hash,auc\n{space.hash(point)},0.75\n")  # no validation column
    (e,) = LookupEvaluator(space, read_table(tmp_path / "u.csv", "auc"), "auc")([Candidate(0, point=point)])
    assert e.value == pytest.approx(0.75)
