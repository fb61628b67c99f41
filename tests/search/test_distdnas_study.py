"""The DistDNAS study CLI (python -m ctrbench.search.distdnas) on a tiny twin: every table written, the claim
computed against the zoo, a rerun resuming every stage from the store; a bad study file named by file and line."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from ctrbench.search.distdnas import main
from ctrbench.search.dnas.aggregate import RULES

SUITE = """name: distdnas_tiny
defaults:
  train: {lr: 3.0e-3, batch_size: 512, max_epochs: 1, patience: 1, monitor: auc, threads: 1}
  dataset: {source: synthetic, rows: 2400}
datasets:
  - {name: criteo_terabyte}
seeds: [0]
measure: {warmup: 1, steps: 1}
entries:
  - {name: DLRM, model: dlrm, params: {embedding_dim: 8, bottom_mlp_units: [8], top_mlp_units: [8]}}
"""
STUDY = """suite: suite.yaml
days: [0, 1]
day_rows: 80
valid_fraction: 0.25
space: {num_blocks: 1, dense_dim: 8, embedding_dim: 8, sparse_ops: [efc, skip]}
dnas: {steps: 3, batch_size: 16}
sweep: [0.01, 1.0]
seeds: [0]
sweep_seeds: [0]
project_workers: [1, 2]
search_seeds: [0, 1]
"""


def test_study_writes_every_table_and_resumes(tmp_path, capsys):
    (tmp_path / "suite.yaml").write_text(SUITE)
    (tmp_path / "study.yaml").write_text(STUDY)
    argv = [str(tmp_path / "study.yaml"), "--out", str(tmp_path / "out"), "--data-root", str(tmp_path / "data")]
    assert main(argv) == 0
    out = tmp_path / "out"
    models = pd.read_csv(out / "models.csv")
    assert set(models["family"]) == {"distdnas", "pooled", "zoo"} and set(models["status"]) == {"ok"}
    ours = models[models["method"] == "distdnas_mean_probabilities_c0.01"]
    assert sorted(zip(ours["search_seed"], ours["seed"])) == [(0, 0), (1, 0)]  # search seed x retrain seed
    assert (models["flops"] > 0).all()
    walls = pd.read_csv(out / "wall_times.csv")
    assert list(walls["coefficient"]) == [0.01, 1.0] * 2 and list(walls["ran_now"]) == [2] * 4
    assert walls["pooled_seconds"].notna().tolist() == [True, False, True, False]  # per search seed, main λ
    assert (walls["projected_1_workers"] >= walls["projected_2_workers"]).all()
    assert len(pd.read_csv(out / "day_tasks.csv")) == 8
    sweep = pd.read_csv(out / "sweep.csv")
    assert list(sweep["coefficient"]) == [0.01, 1.0] * 2 and sweep["ne_mean"].notna().all()
    result = json.loads((out / "result.json").read_text())
    claim = result["claims"]["distdnas_mean_probabilities_c0.01"]
    assert claim["best_zoo"] == "DLRM" and claim["pairs"] == 2 and set(claim["delta_auc_per_search_seed"]) == {"0", "1"}
    assert set(result["claims"]) == {f"distdnas_{r}_c0.01" for r in RULES} | {"pooled_c0.01"}
    assert (out / "ne_vs_flops.png").stat().st_size > 0
    # a rerun searches no day again and trains nothing again: the same records come back from the store
    assert main(argv) == 0
    walls_again = pd.read_csv(out / "wall_times.csv")
    assert list(walls_again["ran_now"]) == [0] * 4 and walls_again["measured_wall_seconds"].notna().all()
    pd.testing.assert_frame_equal(pd.read_csv(out / "models.csv"), models)


@pytest.mark.parametrize("edit, where, what", [
    (("day_rows: 80", "day_rows: 80\nday_row: 3"), "study.yaml:4", "unknown key 'day_row'"),
    (("steps: 3", "steps: -3"), "study.yaml:6", "dnas.steps"),
])
def test_bad_study_file_says_where(tmp_path, capsys, edit, where, what):
    (tmp_path / "study.yaml").write_text(STUDY.replace(*edit))
    assert main([str(tmp_path / "study.yaml"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert where in err and what in err
