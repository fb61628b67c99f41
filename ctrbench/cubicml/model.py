"""The performance model: predicts log train samples/s of a config from its features. Predictors: the ranking
AutoML's MLP ensemble (ctrbench.search.predictors, pairwise margin ranking loss: scores in the throughput's order;
its second head learns log peak memory), the same ensemble trained with MSE (calibrated, so it has a MAPE), a
LightGBM gradient-boosted-tree baseline and a constant (the training mean). Held out by random k-fold split and by
leave-one-model-out; scored by Spearman, Kendall and MAPE against the dataset's noise floor. ctrbench's design."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from ctrbench.cubicml.dataset import CAT_FEATURES, NUM_FEATURES, PerfDataError
from ctrbench.search.predictors.ensemble import EnsemblePredictor, PredictorConfig

TARGET = "train_samples_per_s"


@dataclass
class Encoder:
    """Features -> a numeric matrix: one-hot categories (seen in training; others all-zero), log1p numbers,
    standardised by the training rows; constant columns are dropped."""

    cats: dict[str, list] = field(default_factory=dict)
    nums: list[str] = field(default_factory=list)
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def fit(self, df: pd.DataFrame) -> "Encoder":
        self.cats = {c: sorted(df[c].dropna().astype(str).unique()) for c in CAT_FEATURES
                     if df[c].notna().any() and df[c].astype(str).nunique() > 1}
        self.nums = [c for c in NUM_FEATURES if df[c].notna().any() and df[c].nunique() > 1]
        raw = self._raw(df)
        self.mean, self.std = raw.mean(0), raw.std(0) + 1e-9
        return self

    def _raw(self, df: pd.DataFrame) -> np.ndarray:
        cols = [np.log1p(df[c].fillna(0).clip(lower=0).to_numpy(float))[:, None] for c in self.nums]
        for c, values in self.cats.items():
            s = df[c].astype(str).to_numpy()
            cols.append(np.stack([(s == v).astype(float) for v in values], axis=1))
        if not cols:
            raise PerfDataError("no feature varies in the training rows: nothing to learn from")
        return np.concatenate(cols, axis=1)

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        return (self._raw(df) - self.mean) / self.std


class Predictor:
    """fit(df) on rows with the target; predict(df) -> predicted log samples/s (a score in its order for
    'mlp_rank')."""

    def __init__(self, kind: str, seed: int = 0, members: int = 10, epochs: int = 300):
        if kind not in PREDICTORS:
            raise PerfDataError(f"unknown predictor {kind!r}; valid: {', '.join(PREDICTORS)}")
        self.kind, self.seed, self.members, self.epochs = kind, seed, members, epochs

    def fit(self, df: pd.DataFrame) -> "Predictor":
        y = np.log(df[TARGET].to_numpy(float))
        self.encoder = Encoder().fit(df)
        x = self.encoder.transform(df)
        self.mean = float(y.mean())
        if self.kind in ("mlp_rank", "mlp_mse"):
            mem = np.log(df["peak_memory_mb"].fillna(df["peak_memory_mb"].median()).fillna(1.0).to_numpy(float))
            cfg = PredictorConfig(members=self.members, epochs=self.epochs, seed=self.seed,
                                  loss="pairwise" if self.kind == "mlp_rank" else "mse")
            self.model = EnsemblePredictor(cfg).fit(x, y, mem)
        elif self.kind == "lightgbm":
            import lightgbm

            self.model = lightgbm.LGBMRegressor(n_estimators=200, learning_rate=0.05, num_leaves=15,
                                                min_child_samples=min(10, max(2, len(df) // 10)), subsample=0.9,
                                                subsample_freq=1, random_state=self.seed, verbose=-1, n_jobs=1)
            self.model.fit(x, y)
        return self

    def predict_with_std(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        x = self.encoder.transform(df)
        if self.kind in ("mlp_rank", "mlp_mse"):
            mean, std = self.model.query(x)
            return mean[:, 0], std[:, 0]
        if self.kind == "lightgbm":
            return self.model.predict(x), np.zeros(len(df))
        return np.full(len(df), self.mean), np.zeros(len(df))

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return self.predict_with_std(df)[0]


PREDICTORS = ("mlp_rank", "mlp_mse", "lightgbm", "constant")
CALIBRATED = ("mlp_mse", "lightgbm", "constant")  # predict values (MAPE makes sense), not only an order


def scores(measured: np.ndarray, predicted_log: np.ndarray, calibrated: bool) -> dict:
    """Spearman and Kendall of predicted vs measured throughput, and MAPE where the predictor is calibrated."""
    out: dict = {"n": int(len(measured))}
    if len(measured) >= 3 and np.ptp(predicted_log) > 0:
        out["spearman"] = float(stats.spearmanr(measured, predicted_log).statistic)
        out["kendall"] = float(stats.kendalltau(measured, predicted_log).statistic)
    else:  # a constant prediction orders nothing
        out["spearman"] = out["kendall"] = 0.0
    out["mape"] = float(np.mean(np.abs(np.exp(predicted_log) - measured) / measured)) if calibrated else None
    return out


def held_out_predictions(df: pd.DataFrame, kind: str, split: str, *, folds: int = 5, seed: int = 0,
                         members: int = 10, epochs: int = 300) -> pd.DataFrame:
    """Every row's prediction by a predictor that did not see it: `random` (k-fold) or `model` (leave one model
    out: the predictor has never seen the held-out model). Columns: run_id, model, fold, measured, predicted_log."""
    if split == "random":
        order = np.random.default_rng(seed).permutation(len(df))
        groups = np.empty(len(df), dtype=int)
        groups[order] = np.arange(len(df)) % folds
        fold_of = pd.Series(groups, index=df.index).astype(str)
    elif split == "model":
        fold_of = df["model"].astype(str)
        if fold_of.nunique() < 2:
            raise PerfDataError("leave-one-model-out needs at least two models in the dataset")
    else:
        raise PerfDataError(f"unknown split {split!r}; valid: random, model")
    out = []
    for fold in sorted(fold_of.unique()):
        test, train = df[fold_of == fold], df[fold_of != fold]
        pred = Predictor(kind, seed=seed, members=members, epochs=epochs).fit(train).predict(test)
        out.append(pd.DataFrame({"run_id": test["run_id"].to_numpy(), "model": test["model"].to_numpy(), "fold": fold,
                                 "measured": test[TARGET].to_numpy(float), "predicted_log": pred}))
    return pd.concat(out, ignore_index=True)


def evaluate(df: pd.DataFrame, kinds=PREDICTORS, splits=("random", "model"), **kw) -> tuple[pd.DataFrame, dict]:
    """(held-out predictions of every predictor x split, metrics per predictor x split). Rank metrics are taken
    within each held-out fold and averaged (a leave-one-model-out fold is one model: ranking its configs is the
    search's question), and MAPE over all rows."""
    preds, metrics = [], {}
    for split in splits:
        if split == "model" and df["model"].nunique() < 2:
            continue
        for kind in kinds:
            p = held_out_predictions(df, kind, split, **kw).assign(predictor=kind, split=split)
            preds.append(p)
            per_fold = [scores(g["measured"].to_numpy(), g["predicted_log"].to_numpy(), kind in CALIBRATED)
                        for _, g in p.groupby("fold")]
            pooled = scores(p["measured"].to_numpy(), p["predicted_log"].to_numpy(), kind in CALIBRATED)
            metrics[f"{kind}/{split}"] = {
                "spearman_within_fold": float(np.mean([s["spearman"] for s in per_fold])),
                "kendall_within_fold": float(np.mean([s["kendall"] for s in per_fold])),
                "spearman_pooled": pooled["spearman"], "kendall_pooled": pooled["kendall"],
                "mape": pooled["mape"], "n": pooled["n"]}
    return pd.concat(preds, ignore_index=True), metrics


def plot_predicted_vs_measured(preds: pd.DataFrame, path) -> None:
    """One panel per split: measured vs predicted samples/s of the calibrated predictors (log axes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = list(dict.fromkeys(preds["split"]))
    fig, axes = plt.subplots(1, len(splits), figsize=(5.5 * len(splits), 5), squeeze=False)
    for ax, split in zip(axes[0], splits):
        for kind in ("mlp_mse", "lightgbm"):
            p = preds[(preds["split"] == split) & (preds["predictor"] == kind)]
            ax.scatter(p["measured"], np.exp(p["predicted_log"]), s=10, alpha=0.6, label=kind)
        lo, hi = preds["measured"].min() * 0.8, preds["measured"].max() * 1.25
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set(xscale="log", yscale="log", xlabel="measured train samples/s", ylabel="predicted",
               title=f"held out: {'random 5-fold' if split == 'random' else 'leave one model out'}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
