"""Evolution through the harness: a searcher entry over a NASRec space runs its candidates as linked runs, and a
rerun of the suite replays the search from the stored runs (same proposals, nothing trained again): a searcher
is deterministic given its seed and the history, so the store's resumable runs resume the search too."""
from __future__ import annotations

import hashlib

from ctrbench.harness.runner import run_suite
from ctrbench.harness.suite import load_suite
from ctrbench.runs.records import RunRecord
from ctrbench.runs.store import RunStore, utc_now

SUITE = """
name: evo
defaults: {train: {max_epochs: 1}, dataset: {rows: 2000}}
datasets: [{name: criteo_x1}]
seeds: [0]
entries:
  - {name: evo, kind: searcher, searcher: evolution,
     search: {space: nasrec_small, space_options: {scale: 0.125}, budget: 10, population: 6, sample_size: 3,
              children: 2, seed: 4}}
"""


def test_evolution_entry_runs_and_a_rerun_replays_it(tmp_path, monkeypatch):
    import ctrbench.harness.runner as runner

    monkeypatch.setenv("CTRBENCH_DATA_ROOT", str(tmp_path / "data"))
    trained = []

    def fake_execute_run(run, data_root=None, callbacks=None, record=None):  # a deterministic AUC, no training
        trained.append(run.candidate_index)
        rec = record or RunRecord.from_spec(run, started_at=utc_now())
        auc = 0.6 + int(hashlib.sha256(run.config_hash.encode()).hexdigest()[:6], 16) / 16**6 * 0.2
        rec.status, rec.auc, rec.valid_auc, rec.valid, rec.test = "ok", auc, auc, {"auc": auc}, {"auc": auc}
        rec.finished_at = utc_now()
        return rec

    monkeypatch.setattr(runner, "execute_run", fake_execute_run)
    (tmp_path / "s.yaml").write_text(SUITE)
    suite = load_suite(tmp_path / "s.yaml")
    store = RunStore(tmp_path / "runs.sqlite")
    first = run_suite(suite, store)
    assert sorted(trained) == list(range(10))
    points = {r.candidate_index: r.config["params"]["point"] for r in first.records}
    assert all(r.model == "nasrec_subnet" for r in first.records) and len(points) == 10
    trained.clear()
    second = run_suite(suite, store)
    assert trained == [] and second.skipped == 10
    assert {r.candidate_index: r.config["params"]["point"] for r in second.records} == points
    assert second.searches[0]["best_value"] == first.searches[0]["best_value"]
