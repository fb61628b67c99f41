#!/usr/bin/env bash
# Reproduces results/sigeo (issue 15): the proxy scores of CTR-NAS-Bench's points at every warm-up level (resumable:
# run it again after a kill), the correlation table, and the end-to-end search. Needs results/nasbench (the bench
# export). The scoring is the long part (about 1 s per architecture and level on an idle core).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
STUDIES=${STUDIES:-"suites/sigeo/criteo_small.yaml suites/sigeo/avazu_small.yaml"}
STORE=results/sigeo/runs.sqlite
start=$(date +%s)
nice -n 10 $PY -m ctrbench.search.sigeo $STUDIES --store $STORE
nice -n 10 $PY -m ctrbench.search.sigeo_table $STUDIES --bench results/nasbench --store $STORE --out results/sigeo
nice -n 10 $PY -m ctrbench.search.sigeo_search suites/sigeo/criteo_small.yaml --bench results/nasbench --store $STORE \
    --out results/sigeo/search
echo "wall seconds of this invocation: $(( $(date +%s) - start ))"
