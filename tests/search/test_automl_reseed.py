"""suites/automl/reseed_winners.py: each search's winner is the best validation NE of its trials, the generated
suite retrains the zoo and the winners with their own settings at seeds 0-2 and loads as a suite, and the gains
are paired with the baseline (best mean validation NE) training seed by training seed."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parents[2] / "suites" / "automl"))

from ctrbench.harness.suite import load_suite  # noqa: E402
from reseed_winners import paired_gains, reseed_suite  # noqa: E402
from twin_compare import search_winners  # noqa: E402


def run(entry, candidate, valid_ne, test_ne, seed=0, model="lr", lr=3e-3, status="ok"):
    return {"entry": entry, "candidate": candidate, "seed": seed, "status": status, "rows": 2000,
            "model_params": {}, "train_config": {"lr": lr, "seed": seed, "max_epochs": 1}, "valid_ne": valid_ne,
            "test_ne": test_ne, "test_auc": 0.7, "flops": 10.0, "params": 5, "train_samples_per_s": 1e4,
            "infer_samples_per_s": 1e5, "model": model, "layers": ""}


def test_winners_are_the_best_validation_trials_and_the_suite_retrains_them(tmp_path):
    runs = pd.DataFrame([run("LR", None, 0.95, 0.96), run("FM", None, 0.97, 0.97, model="fm"),
                         run("random_s0", 0, 0.94, 0.99, lr=1e-2), run("random_s0", 1, 0.93, 0.98, lr=1e-3),
                         run("random_s0", 2, 0.90, 0.90, status="failed"),
                         run("tpe_s1", 0, 0.92, 0.91, lr=3e-4)])
    trials, winners = search_winners(runs)
    assert list(zip(winners.entry, winners.candidate)) == [("random_s0", 1), ("tpe_s1", 0)]
    assert trials[trials.searcher == "random"].best_valid_ne.tolist() == [0.94, 0.93, 0.93]
    suite = reseed_suite(runs, "toy")
    names = [e["name"] for e in suite["entries"]]
    assert names == ["FM", "LR", "random_s0_winner1", "tpe_s1_winner0"]
    assert suite["entries"][2]["train"] == {"lr": 1e-3, "max_epochs": 1}  # its own lr; the seed comes from seeds
    path = tmp_path / "reseed.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    loaded = load_suite(path)
    assert sorted({(r.entry, r.seed) for r in loaded.runs}) == sorted((n, s) for n in names for s in (0, 1, 2))


def test_gains_are_paired_by_training_seed_against_the_best_mean_validation_zoo_model():
    rows = []
    for seed, (a_valid, a_test, b_valid, b_test, w_test) in enumerate(
            [(0.90, 1.00, 0.95, 0.90, 0.99), (1.00, 0.80, 0.96, 0.95, 0.76), (1.00, 1.00, 0.97, 1.00, 1.02)]):
        rows += [run("A", None, a_valid, a_test, seed), run("B", None, b_valid, b_test, seed),
                 run("automl_s2_winner7", None, 0.9, w_test, seed)]
    gains, base = paired_gains(pd.DataFrame(rows))
    assert base == "B"  # A wins seed 0 on validation, B has the best mean (0.96 vs 0.967)
    g = gains.iloc[0]
    assert (g.searcher, g.search_seed) == ("automl", 2)
    expected = [100 * (0.99 - 0.90) / 0.90, 100 * (0.76 - 0.95) / 0.95, 100 * (1.02 - 1.00) / 1.00]
    assert [g.gain_pct_seed0, g.gain_pct_seed1, g.gain_pct_seed2] == pytest.approx(expected)
    assert g.gain_pct_mean == pytest.approx(sum(expected) / 3)
