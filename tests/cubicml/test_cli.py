"""`ctrbench cubicml fit | search` on an exported dataset: outputs written; an all-loaded dataset is refused with a
clear error unless --include-loaded."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_perf import synthetic_frame  # noqa: E402

from ctrbench.cli import main  # noqa: E402
from ctrbench.cubicml.dataset import to_long  # noqa: E402


def _write(tmp_path, loaded: int) -> Path:
    df = synthetic_frame(0, models=("dlrm", "dcnv2")).assign(loaded=float(loaded))
    data = tmp_path / "data"
    data.mkdir()
    to_long(df).to_csv(data / "perf_long.csv", index=False)
    return data


def test_fit_and_search_write_their_outputs(tmp_path, one_torch_thread):
    data = _write(tmp_path, loaded=0)
    out = tmp_path / "out"
    assert main(["cubicml", "fit", "--data", str(data), "--out", str(out), "--predictors", "lightgbm", "constant",
                 "--folds", "3"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metrics"]["lightgbm/model"]["spearman_within_fold"] > 0.8 and metrics["rows"] == 144
    assert (out / "predicted_vs_measured.png").stat().st_size > 0
    assert main(["cubicml", "search", "--data", str(data), "--out", str(out), "--model", "dlrm", "--dataset",
                 "criteo_x1", "--seeds", "0", "--members", "2", "--epochs", "50"]) == 0
    assert (out / "search_summary_dlrm_criteo_x1.csv").exists() and (out / "search_dlrm_criteo_x1.png").exists()


def test_loaded_measurements_are_refused_unless_asked_for(tmp_path, capsys):
    data = _write(tmp_path, loaded=1)
    assert main(["cubicml", "fit", "--data", str(data), "--out", str(tmp_path / "o"), "--predictors", "constant"]) == 2
    assert "loaded machine" in capsys.readouterr().err
    assert main(["cubicml", "fit", "--data", str(data), "--out", str(tmp_path / "o"), "--predictors", "constant",
                 "--include-loaded"]) == 0
    assert main(["cubicml", "search", "--data", str(data), "--out", str(tmp_path / "o"), "--model", "wukong",
                 "--dataset", "criteo_x1", "--include-loaded"]) == 2
    assert "no measured configs" in capsys.readouterr().err


def test_the_search_history_scopes():
    import pandas as pd

    from ctrbench.cubicml.cli import prior_rows

    df = pd.DataFrame({"model": ["dlrm", "dlrm", "dcnv2", "dcnv2"], "dataset": ["criteo_x1", "avazu_x1"] * 2})
    assert prior_rows(df, "dlrm", "criteo_x1", None) is None
    other_runs = prior_rows(df, "dlrm", "criteo_x1", "other-runs")
    assert list(zip(other_runs.model, other_runs.dataset)) == [("dlrm", "avazu_x1"), ("dcnv2", "criteo_x1"),
                                                               ("dcnv2", "avazu_x1")]
    assert set(prior_rows(df, "dlrm", "criteo_x1", "other-models").model) == {"dcnv2"}
    with pytest.raises(ValueError, match="prior scope 'all'"):
        prior_rows(df, "dlrm", "criteo_x1", "all")


def test_search_with_the_history_of_other_models_only(tmp_path, one_torch_thread, capsys):
    data = _write(tmp_path, loaded=0)
    out = tmp_path / "out"
    assert main(["cubicml", "search", "--data", str(data), "--out", str(out), "--model", "dlrm", "--dataset",
                 "criteo_x1", "--seeds", "0", "--members", "2", "--epochs", "50", "--prior", "other-models"]) == 0
    assert (out / "search_summary_dlrm_criteo_x1.csv").exists()
    with pytest.raises(SystemExit) as exc:
        main(["cubicml", "search", "--data", str(data), "--out", str(out), "--model", "dlrm", "--dataset",
              "criteo_x1", "--prior", "everything"])
    assert exc.value.code == 2 and "invalid choice: 'everything'" in capsys.readouterr().err
