"""The shape of SiGeo's Table 4 on CTR (issue 15 item 3): Spearman rho and Kendall tau of every proxy x warm-up
level (and one-shot) against CTR-NAS-Bench's from-scratch test AUC (seed 0), with percentile bootstrap 95% CIs
over the architectures (scipy.stats.bootstrap, paired; the statistics vectorised here and checked against
scipy's spearmanr / kendalltau), beside the bench's seed-to-seed agreement (the same
statistics between two from-scratch seeds of the points trained three times: the noise ceiling). Every proxy is
also correlated on just those seeded points, so it can be read against the ceiling like for like. Claim (a) of
the issue is tested as the paired bootstrap difference tau(SiGeo) - tau(ZiCo) at each level.

    python -m ctrbench.search.sigeo_table suites/sigeo/criteo_small.yaml ... --bench results/nasbench \\
        --store results/sigeo/runs.sqlite --out results/sigeo
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ctrbench.errors import DataError
from ctrbench.runs.store import RunStore
from ctrbench.search.sigeo import StudyConfig, load_config, study_scores

N_RESAMPLES = 1000
BATCH = 50  # bootstrap resamples computed at once (Kendall's pair-sign arrays are batch x n x n)


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a - a.mean(-1, keepdims=True), b - b.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))


def spearman(x, y, axis: int = -1) -> np.ndarray:
    """Spearman's rho along `axis` (average ranks for ties), vectorised over the other axes."""
    x, y = np.moveaxis(np.asarray(x, float), axis, -1), np.moveaxis(np.asarray(y, float), axis, -1)
    return _pearson(stats.rankdata(x, axis=-1), stats.rankdata(y, axis=-1))


def kendall(x, y, axis: int = -1) -> np.ndarray:
    """Kendall's tau-b along `axis` (scipy's default variant: ties count in the denominator), vectorised:
    sum over pairs of sign(dx) sign(dy) / sqrt(sum sign(dx)^2 * sum sign(dy)^2)."""
    x, y = np.moveaxis(np.asarray(x, float), axis, -1), np.moveaxis(np.asarray(y, float), axis, -1)
    sx = np.sign(x[..., :, None] - x[..., None, :])
    sy = np.sign(y[..., :, None] - y[..., None, :])
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sx * sy).sum((-2, -1)) / np.sqrt((sx * sx).sum((-2, -1)) * (sy * sy).sum((-2, -1)))


STATISTICS = {"spearman": spearman, "kendall": kendall}
CORR_COLUMNS = ["dataset", "space", "points", "measure", "level", "n", *(f"{s}{x}" for s in STATISTICS
                                                                        for x in ("", "_lo", "_hi"))]


def finite_ranks(x) -> np.ndarray:
    """Scores with -inf/+inf moved just past the finite ones (NASWOT's -inf for a singular kernel ranks last)."""
    x = np.asarray(x, dtype=np.float64).copy()
    finite = x[np.isfinite(x)]
    lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
    x[x == -np.inf], x[x == np.inf] = lo - 1.0, hi + 1.0
    return x


def with_ci(statistic, *samples, seed: int = 0) -> tuple[float, float, float]:
    """(value, 2.5%, 97.5%) of a paired statistic over the rows of `samples`, percentile bootstrap."""
    value = float(statistic(*samples))
    if len(samples[0]) < 3 or not np.isfinite(value):
        return value, float("nan"), float("nan")
    with warnings.catch_warnings():  # a resample of tied values has no rank statistic (NaN, left out)
        warnings.simplefilter("ignore")
        res = stats.bootstrap(samples, statistic, paired=True, vectorized=True, n_resamples=N_RESAMPLES,
                              batch=BATCH, method="percentile", random_state=np.random.default_rng(seed))
    return value, float(res.confidence_interval.low), float(res.confidence_interval.high)


def correlations(score, truth, seed: int = 0) -> dict:
    """{spearman, spearman_lo, ..., kendall_hi, n} of one score column against the truth (NaN pairs dropped)."""
    score, truth = finite_ranks(score), np.asarray(truth, dtype=np.float64)
    keep = ~(np.isnan(score) | np.isnan(truth))
    out = {"n": int(keep.sum())}
    for name, fn in STATISTICS.items():
        v, lo, hi = with_ci(fn, score[keep], truth[keep], seed=seed)
        out.update({name: v, f"{name}_lo": lo, f"{name}_hi": hi})
    return out


def read_bench(bench: Path, space: str, dataset: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the lookup table, the space x dataset rows of runs.csv) of CTR-NAS-Bench in `bench`."""
    table_path, runs_path = bench / f"{space}_{dataset}.csv", bench / "runs.csv"
    for p in (table_path, runs_path):
        if not p.is_file():
            raise DataError("no CTR-NAS-Bench file here (ctrbench nasbench export writes it)", file=str(p))
    table = pd.read_csv(table_path, dtype={"point_hash": str})
    runs = pd.read_csv(runs_path, dtype={"point_hash": str})
    for frame, p in ((table, table_path), (runs, runs_path)):
        missing = {"point_hash", "auc"} - set(frame.columns)
        if missing:
            raise DataError(f"missing columns {sorted(missing)}", file=str(p))
    return table, runs[(runs["space"] == space) & (runs["dataset"] == dataset)]


def seed_ceiling(runs: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """(one row per seed pair: rho and tau of their test AUC over the points trained with every seed, the hashes
    of those points)."""
    wide = runs.pivot_table(index="point_hash", columns="seed", values="auc").dropna()
    rows = []
    for a, b in combinations(sorted(wide.columns), 2):
        rows.append({"measure": f"seed {a} vs seed {b}", **correlations(wide[a].to_numpy(), wide[b].to_numpy(),
                                                                           seed)})
    return pd.DataFrame(rows), list(wide.index) if len(wide.columns) > 1 else []


def measures(cfg: StudyConfig) -> list[str]:
    return [*cfg.proxies, "oneshot"]


def study_table(cfg: StudyConfig, scores: pd.DataFrame, table: pd.DataFrame, runs: pd.DataFrame,
                seed: int = 0) -> pd.DataFrame:
    """CORR_COLUMNS rows: every measure x level against the truth, on all scored bench points and on the seeded
    ones, and the seed-to-seed rows."""
    truth = table.set_index("point_hash")["auc"]
    ceiling, seeded = seed_ceiling(runs, seed)
    out = []
    for points, keep in (("all", None), ("seeded", seeded)):
        for level in cfg.levels:
            at = scores[scores["level"] == level].set_index("point_hash")
            at = at[at.index.isin(truth.index)] if keep is None else at[at.index.isin(keep)]
            if len(at) < 3:  # no rank statistic (e.g. a bench without seed re-runs has no seeded points)
                continue
            for m in measures(cfg):
                if m not in at.columns or at[m].isna().all():
                    continue
                out.append({"points": points, "measure": m, "level": level,
                            **correlations(at[m].to_numpy(), truth.loc[at.index].to_numpy(), seed)})
    for row in ceiling.to_dict(orient="records"):
        out.append({"points": "seeded", "level": float("nan"), **row})
    frame = pd.DataFrame(out)
    frame.insert(0, "space", cfg.space)
    frame.insert(0, "dataset", cfg.dataset)
    return frame[CORR_COLUMNS]


def claim_a(cfg: StudyConfig, scores: pd.DataFrame, table: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """tau(SiGeo, truth) - tau(ZiCo, truth) per level and SiGeo variant, with a paired bootstrap CI."""
    truth = table.set_index("point_hash")["auc"]
    rows = []
    for level in cfg.levels:
        at = scores[scores["level"] == level].set_index("point_hash")
        at = at[at.index.isin(truth.index)]
        for variant in ("sigeo", "sigeo_ref"):
            if variant not in at.columns or "zico" not in at.columns:
                continue
            t = truth.loc[at.index].to_numpy()
            diff, lo, hi = with_ci(lambda s, z, y, axis=-1: kendall(s, y, axis) - kendall(z, y, axis),
                                   finite_ranks(at[variant]),
                                   finite_ranks(at["zico"]), t, seed=seed)
            rows.append({"dataset": cfg.dataset, "space": cfg.space, "level": level, "variant": variant,
                         "n": len(t), "tau_diff": diff, "tau_diff_lo": lo, "tau_diff_hi": hi})
    return pd.DataFrame(rows)


def costs(cfg: StudyConfig, scores: pd.DataFrame) -> pd.DataFrame:
    """Per level: the warm-up's rows and seconds, and the mean seconds per architecture of scoring every proxy
    together and of the one-shot evaluation."""
    g = scores.groupby("level")
    out = pd.DataFrame({"warmup_rows": g["warmup_rows"].first(), "warmup_seconds": g["warmup_seconds"].first(),
                        "points": g["point_hash"].count(), "proxy_seconds_per_arch": g["proxy_seconds"].mean()})
    if "oneshot_seconds" in scores.columns:
        out["oneshot_seconds_per_arch"] = g["oneshot_seconds"].mean()
    out = out.reset_index()
    out.insert(0, "space", cfg.space)
    out.insert(0, "dataset", cfg.dataset)
    return out


def markdown(corr: pd.DataFrame) -> str:
    """Table-4-style text: one block per bench, rows = measure, columns = warm-up level, cells 'rho / tau'."""
    lines = []
    for (dataset, space, points), block in corr.groupby(["dataset", "space", "points"], sort=False):
        lines += [f"### {dataset} / {space} ({points} points; Spearman rho / Kendall tau [tau 95% CI])", ""]
        levels = sorted(block["level"].dropna().unique())
        lines += ["| measure | n | " + " | ".join(f"{lv:.0%}" for lv in levels) + " |",
                  "|---|---|" + "---|" * len(levels)]
        for m, rows in block.groupby("measure", sort=False):
            cells = []
            for lv in levels:
                r = rows[rows["level"] == lv]
                cells.append("" if r.empty else "{:.2f} / {:.2f} [{:.2f}, {:.2f}]".format(
                    *r.iloc[0][["spearman", "kendall", "kendall_lo", "kendall_hi"]]))
            if rows["level"].isna().all():
                r = rows.iloc[0]
                cells = [f"{r.spearman:.2f} / {r.kendall:.2f} [{r.kendall_lo:.2f}, {r.kendall_hi:.2f}] (no warm-up)"] + \
                    [""] * (len(levels) - 1)
            lines.append(f"| {m} | {int(rows['n'].iloc[0])} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Correlate the SiGeo study's proxy scores with CTR-NAS-Bench.")
    ap.add_argument("configs", nargs="+")
    ap.add_argument("--bench", default="results/nasbench", help="CTR-NAS-Bench export folder")
    ap.add_argument("--store", default="results/sigeo/runs.sqlite")
    ap.add_argument("--out", default="results/sigeo")
    args = ap.parse_args(argv)
    from ctrbench.measure import environment

    store, out, bench = RunStore(args.store, create=False), Path(args.out), Path(args.bench)
    out.mkdir(parents=True, exist_ok=True)
    corr, claims, cost, all_scores, spans = [], [], [], [], {}
    for path in args.configs:
        cfg = load_config(path)
        scores = study_scores(cfg, store)
        if scores.empty:
            raise DataError(f"no scores of study {cfg.name!r} in the store; run python -m ctrbench.search.sigeo "
                            f"{path} first", file=args.store)
        table, runs = read_bench(bench, cfg.space, cfg.dataset)
        corr.append(study_table(cfg, scores, table, runs))
        claims.append(claim_a(cfg, scores, table))
        cost.append(costs(cfg, scores))
        all_scores.append(scores.assign(dataset=cfg.dataset, space=cfg.space))
        rows = [e for lv in cfg.levels for k in ("proxy", "inherit") for e in
                store.evaluations(search_id=cfg.search_id(lv, k))]
        spans[cfg.name] = {"first_started": min(r["started_at"] for r in rows),
                           "last_finished": max(r["finished_at"] for r in rows),
                           "scoring_seconds": sum(r["cost_seconds"] or 0 for r in rows),
                           "bench_points": int(table["point_hash"].isin(scores["point_hash"]).sum())}
    corr_frame = pd.concat(corr, ignore_index=True)
    corr_frame.to_csv(out / "correlations.csv", index=False, float_format="%.4f")
    pd.concat(claims, ignore_index=True).to_csv(out / "claim_a.csv", index=False, float_format="%.4f")
    pd.concat(cost, ignore_index=True).to_csv(out / "costs.csv", index=False, float_format="%.4f")
    pd.concat(all_scores, ignore_index=True).to_csv(out / "scores.csv", index=False, float_format="%.6g")
    (out / "table.md").write_text(markdown(corr_frame))
    (out / "provenance.json").write_text(json.dumps({"environment": environment(), "studies": spans,
                                                     "bench": str(bench), "command": " ".join(sys.argv)}, indent=1))
    print(markdown(corr_frame))
    return 0


if __name__ == "__main__":
    sys.exit(main())
