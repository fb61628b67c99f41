"""The SiGeo correlation table: rank statistics with bootstrap CIs, the seed-to-seed ceiling, claim (a)'s paired
difference, and the bench files' errors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ctrbench.errors import DataError
from ctrbench.search import sigeo_table
from ctrbench.search.sigeo import StudyConfig
from ctrbench.search.sigeo_table import (claim_a, correlations, finite_ranks, kendall, markdown, read_bench,
                                         seed_ceiling, spearman, study_table)

HASHES = [f"h{i}" for i in range(12)]


@pytest.fixture(autouse=True)
def _fewer_resamples(monkeypatch):
    monkeypatch.setattr(sigeo_table, "N_RESAMPLES", 200)

AUC = np.linspace(0.70, 0.80, 12)


def test_vectorised_statistics_equal_scipys_with_ties():
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 5, (3, 17)).astype(float), rng.normal(size=(3, 17))  # x has many ties
    y[:, :4] = 0.0
    for i in range(3):
        assert kendall(x, y)[i] == pytest.approx(stats.kendalltau(x[i], y[i]).statistic, abs=1e-12)
        assert spearman(x, y)[i] == pytest.approx(stats.spearmanr(x[i], y[i]).statistic, abs=1e-12)
    assert kendall(x.T, y.T, axis=0)[2] == pytest.approx(stats.kendalltau(x[2], y[2]).statistic, abs=1e-12)


def test_infinite_scores_rank_past_the_finite_ones():
    assert list(finite_ranks([2.0, -np.inf, 5.0, np.inf])) == [2.0, 1.0, 5.0, 6.0]


def test_a_monotone_score_has_rank_correlation_one_with_a_tight_ci():
    r = correlations(np.exp(AUC * 10), AUC)
    assert r["n"] == 12 and r["spearman"] == pytest.approx(1.0) and r["kendall"] == pytest.approx(1.0)
    assert r["kendall_lo"] == pytest.approx(1.0) and r["kendall_hi"] == pytest.approx(1.0)
    noisy = correlations(AUC + np.random.default_rng(0).normal(0, 0.05, 12), AUC)
    assert -1 <= noisy["kendall_lo"] <= noisy["kendall"] <= noisy["kendall_hi"] <= 1


def runs_frame() -> pd.DataFrame:
    rows = [{"space": "nasrec_small", "dataset": "criteo_x1", "point_hash": h, "seed": 0, "auc": a}
            for h, a in zip(HASHES, AUC)]
    rows += [{"space": "nasrec_small", "dataset": "criteo_x1", "point_hash": h, "seed": 1, "auc": a}
             for h, a in zip(HASHES[:6], AUC[:6])]  # the same order
    rows += [{"space": "nasrec_small", "dataset": "criteo_x1", "point_hash": h, "seed": 2, "auc": -a}
             for h, a in zip(HASHES[:6], AUC[:6])]  # the reverse order
    return pd.DataFrame(rows)


def test_seed_ceiling_pairs_the_seeds_over_the_points_trained_with_all():
    ceiling, seeded = seed_ceiling(runs_frame())
    assert seeded == HASHES[:6]
    tau = dict(zip(ceiling["measure"], ceiling["kendall"]))
    assert tau == pytest.approx({"seed 0 vs seed 1": 1.0, "seed 0 vs seed 2": -1.0, "seed 1 vs seed 2": -1.0})


def test_study_table_and_claim_a():
    cfg = StudyConfig(name="t", levels=[0.0, 0.01], proxies=["zico", "sigeo"])
    scores = pd.DataFrame([{"level": lv, "point_hash": h, "zico": -a, "sigeo": a, "oneshot": None}
                           for lv in cfg.levels for h, a in zip(HASHES, AUC)])
    table = pd.DataFrame({"point_hash": HASHES, "auc": AUC})
    frame = study_table(cfg, scores, table, runs_frame())
    allpts = frame[(frame["points"] == "all") & (frame["level"] == 0.01)].set_index("measure")
    assert allpts.loc["sigeo", "kendall"] == pytest.approx(1.0) and allpts.loc["zico", "kendall"] == pytest.approx(-1)
    assert "oneshot" not in set(frame["measure"])  # never scored: no row
    assert set(frame[frame["points"] == "seeded"]["n"]) == {6}
    claims = claim_a(cfg, scores, table)
    assert list(claims["tau_diff"]) == pytest.approx([2.0, 2.0]) and list(claims["tau_diff_lo"]) == pytest.approx([2, 2])
    assert "| sigeo | 12 | 1.00 / 1.00 [1.00, 1.00] |" in markdown(frame)


def test_bench_files_missing_or_malformed_are_named(tmp_path):
    with pytest.raises(DataError, match="nasrec_small_criteo_x1.csv"):
        read_bench(tmp_path, "nasrec_small", "criteo_x1")
    pd.DataFrame({"point_hash": ["a"], "auc": [0.7]}).to_csv(tmp_path / "nasrec_small_criteo_x1.csv", index=False)
    pd.DataFrame({"point_hash": ["a"]}).to_csv(tmp_path / "runs.csv", index=False)
    with pytest.raises(DataError, match=r"missing columns \['auc'\].*runs.csv"):
        read_bench(tmp_path, "nasrec_small", "criteo_x1")
