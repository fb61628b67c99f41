"""End-to-end training speed of the fused kernels (issue 12): samples/s of whole training steps (forward, loss,
backward, optimizer) of DLRM and DCNv2 on the Criteo_x1 twin and InterFormer on the AmazonElectronics_x1 twin,

  torch+adam            plain PyTorch embeddings (F.embedding_bag / F.embedding), Adam on every parameter
  fused+adam            the fused embedding-bag kernels (one call per forward), Adam on every parameter
  fused+rowwise_adagrad the fused kernels, the tables updated inside the backward (row-wise Adagrad, FBGEMM-TBE
                        style), Adam on the dense part
  floor-tables-frozen   torch embeddings that get no gradient and no update: every step's dense work alone, so
                        torch+adam / floor is the most any embedding path could speed the step up (Amdahl)

timed round-robin on the same batches (one step of each variant per round, so a change in the machine's load
hits all alike), at the twin's own table sizes and with large tables (the twin generated with card_ratio 0.5:
its big fields approach 100,000 ids each). A profile of each variant (torch.profiler, self CPU time by op,
grouped into embedding / optimizer / dense work) shows where the time goes. Quality (test AUC of the two
trained variants) is suites/kernels_e2e.yaml's job.

Run: python suites/kernels/bench_e2e_training.py --out results/kernels/e2e
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from ctrbench.data.api import open_dataset
from ctrbench.data.loader import BatchLoader
from ctrbench.kernels.bench_util import time_round_robin
from ctrbench.measure import environment
from ctrbench.models import build_model, model_tables
from ctrbench.train import TrainConfig, make_optimizers, training_step

VARIANTS = {  # name -> (model params, train config, tables frozen)
    "torch+adam": ({"embedding_backend": "torch"}, {}, False),
    "fused+adam": ({"embedding_backend": "fused"}, {}, False),
    "fused+rowwise_adagrad": ({"embedding_backend": "fused"},
                              {"fused_embedding_optimizer": "rowwise_adagrad", "embedding_lr": 0.01}, False),
    "floor-tables-frozen": ({"embedding_backend": "torch"}, {}, True),
}
# (model, dataset, rows, twin options, batch size, params)
CASES = [
    ("dlrm", "criteo_x1", 200_000, None, 2048, {}),
    ("dcnv2", "criteo_x1", 200_000, None, 2048, {}),
    ("dlrm", "criteo_x1", 200_000, {"card_ratio": 0.5}, 2048, {}),
    ("dcnv2", "criteo_x1", 200_000, {"card_ratio": 0.5}, 2048, {}),
    ("interformer", "amazonelectronics_x1", 60_000, None, 512, {"max_seq_len": 50}),
]
EMBEDDING_OPS = ("embedding", "ctrbench::ebc", "index_add", "repeat_interleave", "_embedding_bag")
OPTIMIZER_OPS = ("_foreach", "addcdiv", "lerp", "sqrt", "adam")


def _op_group(name: str) -> str:
    low = name.lower()
    if any(k in low for k in EMBEDDING_OPS):
        return "embedding"
    if any(k in low for k in OPTIMIZER_OPS):
        return "optimizer"
    return "dense+other"


def _stepper(model, cfg, batches):
    """A closure taking one training step on the next batch (cycling)."""
    opts = make_optimizers(model, cfg)
    state = {"i": 0}

    def step():
        training_step(model, batches[state["i"] % len(batches)], opts, cfg)
        state["i"] += 1
    return step


def run_case(case, reps: int, data_root: str, prof_dir: Path) -> list[dict]:
    name, ds, rows, twin, batch_size, params = case
    cache = open_dataset(ds, "synthetic", rows=rows, data_root=data_root, twin=twin)
    table_rows = sum(cache.vocab_sizes[f.name] for f in cache.spec.categorical)
    batches = [b for _, b in zip(range(16), BatchLoader(cache, "train", batch_size, shuffle=True, drop_last=True))]
    steps = {}
    for variant, (vparams, vtrain, frozen) in VARIANTS.items():
        model = build_model(name, cache.spec, cache.vocab_sizes, {**params, **vparams}, model_tables(cache), seed=0)
        for table in model.embedding_parameters() if frozen else ():
            table.requires_grad_(False)
        steps[variant] = _stepper(model.train(), TrainConfig(lr=1e-3, **vtrain), batches)
    times = time_round_robin(steps, "cpu", reps=reps, warmup=2)
    base = times["torch+adam"][0]
    tag = f"{name}-{ds}-{table_rows}rows"
    out = []
    for variant, (p50, p20, p80) in times.items():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                steps[variant]()
        groups: dict[str, float] = {}
        for ev in prof.key_averages():
            groups[_op_group(ev.key)] = groups.get(_op_group(ev.key), 0.0) + ev.self_cpu_time_total
        total = sum(groups.values()) or 1.0
        (prof_dir / f"{tag}-{variant}.txt").write_text(
            prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
        out.append({"model": name, "dataset": ds, "twin": json.dumps(twin or {}), "table_rows": table_rows,
                    "batch_size": batch_size, "variant": variant, "step_ms_p50": round(p50, 2),
                    "step_ms_p20": round(p20, 2), "step_ms_p80": round(p80, 2),
                    "samples_per_s": round(batch_size / p50 * 1e3), "speedup_vs_torch_adam": round(base / p50, 3),
                    **{f"share_{g}": round(groups.get(g, 0.0) / total, 3)
                       for g in ("embedding", "optimizer", "dense+other")}})
        print(out[-1], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/kernels/e2e")
    ap.add_argument("--reps", type=int, default=10, help="timed rounds (each variant one step per round)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--only", default=None, help="run only cases whose model name is this")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    (out / "profiles").mkdir(parents=True, exist_ok=True)
    started = time.time()
    env = environment()  # before any output is written: the git revision is the tree's, not "dirty" by this run
    rows = []
    for case in CASES:
        if args.only is None or case[0] == args.only:
            rows.extend(run_case(case, args.reps, args.data_root, out / "profiles"))
    with open(out / "throughput.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    meta = {"command": "python suites/kernels/bench_e2e_training.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
        "wall_seconds": round(time.time() - started, 1), "threads": args.threads, "reps": args.reps, **env}
    (out / "run.json").write_text(json.dumps(meta, indent=2, default=str))
    print(json.dumps(meta, default=str))


if __name__ == "__main__":
    main()
