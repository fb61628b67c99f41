"""Usage: python results/interformer/diagnostics/attention_probe.py MODELS [EPOCHS]
(MODELS comma-separated, e.g. dhen,interformer,din; interformer:sole for a mode).

Does a trained model's test logit carry the twin's attention-only relevance (rel_attn beyond rel_mean)?
Regenerates the Amazon twin's planted signal parts for the test split (read-only use of the generator), trains
models on the cached twin, and reports the partial correlation of each model's logit with rel_attn given the
other parts (first, rel_mean, cate_match), next to the oracle logit's."""
import sys
import numpy as np
import torch
from ctrbench.data.api import open_dataset
from ctrbench.data.registry import get_spec
from ctrbench.data.synthetic import build_model as build_twin, split_plan
from ctrbench.data.loader import BatchLoader
from ctrbench.models.registry import build_model, model_tables
from ctrbench.train import fit, predict, TrainConfig

torch.set_num_threads(1)
name, rows = "amazonelectronics_x1", 20000
spec = get_spec(name)
cache = open_dataset(name, rows=rows)
twin, knobs = build_twin(spec, rows, 0)
plan = split_plan(spec, rows, knobs)
s_idx, (split, lo, hi) = 2, plan[2]
assert split == "test" and hi - lo <= knobs.chunk_rows
rng = np.random.default_rng([0, 2, s_idx, 0])
t = np.minimum((np.arange(lo, hi) + 0.5) / rows, 1 - 1e-12)
blocks, parts, _ = twin.sample(rng, hi - lo, t)
hist = np.concatenate([b.sequences["item_history"].numpy() for b in BatchLoader(cache, "test", 4096)])
T = hist.shape[1]
assert np.array_equal(hist, blocks["seq__item_history"][:, -T:]), "regenerated test rows differ from the cache"
P = {k: (v - v.mean()) / v.std() for k, v in parts.items()}

def partial(logit):
    others = np.column_stack([P["first"], P["rel_mean"], P["cate_match"], np.ones(len(logit))])
    r1 = logit - others @ np.linalg.lstsq(others, logit, rcond=None)[0]
    r2 = P["rel_attn"] - others @ np.linalg.lstsq(others, P["rel_attn"], rcond=None)[0]
    return float(np.corrcoef(r1, r2)[0, 1])

pred0 = predict(build_model("fm", spec, cache.vocab_sizes, {"embedding_dim": 16}), cache, "test", 4096, torch.device("cpu"))
op = pred0["oracle_p"].astype(np.float64)
print(f"oracle: partial corr with rel_attn {partial(np.log(op / (1 - op))):.3f}")
cfg = dict(monitor="auc", max_epochs=int(sys.argv[2]) if len(sys.argv) > 2 else 8, patience=2, batch_size=512, lr=0.003, threads=1, seed=0)
for model_name in sys.argv[1].split(","):
    params = {"embedding_dim": 16}
    if ":" in model_name:
        model_name, mode = model_name.split(":")
        params["mode"] = mode
    m = build_model(model_name, spec, cache.vocab_sizes, params, model_tables(cache), seed=0)
    res = fit(m, cache, TrainConfig(**cfg))
    out = predict(m, cache, "test", 4096, torch.device("cpu"))
    p = np.clip(out["preds"].astype(np.float64), 1e-7, 1 - 1e-7)
    print(f"{model_name}{params.get('mode', '')}: epochs {res.epochs_run} best {res.best_epoch} test AUC {res.test.get('auc'):.4f}; "
          f"partial corr with rel_attn {partial(np.log(p / (1 - p))):.3f}; corr with oracle logit "
          f"{np.corrcoef(np.log(p/(1-p)), np.log(op/(1-op)))[0,1]:.3f}", flush=True)
