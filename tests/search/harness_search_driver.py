"""A harness search without training, for the search-through-the-harness tests: `fake_execute` stands in for
execute_run with a deterministic validation AUC per run config. Run as a script (suite, store, seconds per run) it
runs the suite with that stand-in, each run taking `seconds`, so a test can SIGKILL it mid-search."""
from __future__ import annotations

import hashlib
import sys
import time

from ctrbench.runs.records import RunRecord
from ctrbench.runs.store import RunStore, utc_now


def fake_execute(trained: list, seconds: float = 0.0):
    """An execute_run stand-in: appends the candidate index to `trained`, waits `seconds`, and scores the run
    by its config hash (the same config always gets the same AUC)."""

    def execute_run(run, data_root=None, callbacks=None, record=None):
        trained.append(run.candidate_index)
        time.sleep(seconds)
        rec = record or RunRecord.from_spec(run, started_at=utc_now())
        auc = 0.6 + int(hashlib.sha256(run.config_hash.encode()).hexdigest()[:6], 16) / 16**6 * 0.2
        rec.status, rec.auc, rec.valid_auc, rec.valid, rec.test = "ok", auc, auc, {"auc": auc}, {"auc": auc}
        rec.finished_at = utc_now()
        return rec

    return execute_run


if __name__ == "__main__":
    import ctrbench.harness.runner as runner
    from ctrbench.harness.suite import load_suite

    suite_path, store_path, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    runner.execute_run = fake_execute([], seconds)
    runner.run_suite(load_suite(suite_path), RunStore(store_path))
