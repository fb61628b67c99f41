#!/usr/bin/env bash
# CubicML's GPU check (issue 18 item 6). PREPARED, NOT YET RUN: no GPU was lent to the session that wrote it.
# Runs suites/cubicml_gpu.yaml (32 runs: CUDA vs Triton kernels x fp32/bf16 autocast x batch size x sparse /
# fused embedding gradients, CUDA-synchronised step timing), exports the performance dataset and prints what ran.
# Usage (repository root, a CUDA machine with the extension built with nvcc): bash results/cubicml/gpu_check.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-results/cubicml/gpu}
mkdir -p "$OUT"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
"$PY" -m ctrbench.cli kernels info || true
start=$(date +%s)
timeout "${LIMIT_S:-480}" "$PY" -m ctrbench.cli run suites/cubicml_gpu.yaml || echo "suite stopped (exit $?): resumable"
"$PY" -m ctrbench.cli cubicml export --store results/cubicml_gpu/runs.sqlite --out "$OUT"
"$PY" - "$OUT" <<'PY'
import sys
import pandas as pd
w = pd.read_csv(f"{sys.argv[1]}/perf_wide.csv")
cols = ["model", "kernel_backend", "dtype", "batch_size", "embedding_gradients", "train_samples_per_s",
        "step_time_p50_ms", "peak_memory_mb", "step_time_cv", "converged", "loaded"]
print(w[cols].sort_values(["model", "train_samples_per_s"]).to_string(index=False))
PY
echo "wall seconds: $(( $(date +%s) - start )); git $(git rev-parse --short HEAD); $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
