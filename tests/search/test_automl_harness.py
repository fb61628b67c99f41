"""The automl searcher through the harness on a tiny criteo twin, training for real: its candidates run as linked
dhen_stack runs on half the training rows with a validation curve, the store keeps its policy state, and a rerun
resumes from the store without training anything again."""
from __future__ import annotations

import pytest

import ctrbench.harness.runner as runner
from ctrbench.harness.runner import run_suite
from ctrbench.harness.suite import load_suite
from ctrbench.runs.store import RunStore

SUITE = """
name: automl
defaults: {train: {max_epochs: 1, batch_size: 128}, dataset: {rows: 2000}}
datasets: [{name: criteo_x1}]
seeds: [0]
measure: {warmup: 1, steps: 2}
entries:
  - {name: rl, kind: searcher, searcher: automl,
     search: {space: dhen, space_options: {embedding_dim: 4, hidden_units: [8]}, budget: 5, initial: 3,
              per_round: 1, policy_steps: 10, policy_batch: 8, pool: 16, seed: 1,
              fidelity: {fraction: 0.5, train_rows: 1440, checkpoints: 3},
              predictor: {members: 2, epochs: 20}}}
"""

pytestmark = pytest.mark.usefixtures("data_root_env")


def test_automl_search_trains_low_fidelity_candidates_and_resumes_from_the_store(tmp_path, monkeypatch):
    (tmp_path / "s.yaml").write_text(SUITE)
    suite = load_suite(tmp_path / "s.yaml")
    store = RunStore(tmp_path / "runs.sqlite")
    first = run_suite(suite, store)
    recs = sorted(first.records, key=lambda r: r.candidate_index)
    assert [r.candidate_index for r in recs] == list(range(5)) and all(r.model == "dhen_stack" for r in recs)
    assert all(r.status == "ok" and r.train_rows == 720 and len(r.history) == 3 for r in recs)
    sid = suite.searches[0].search_id
    state = store.search_state(sid)["state"]
    assert len(state["data"]) == 5 - 1 and state["predictor"]["weights"]  # the last round is not yet told
    assert first.searches[0]["status"] == "ok" and first.searches[0]["metric"] == "ne"
    trained = []
    monkeypatch.setattr(runner, "execute_run", lambda run, **kw: trained.append(run) or None)
    second = run_suite(suite, store)
    assert trained == [] and second.searches[0]["best_value"] == first.searches[0]["best_value"]
