"""A fast stand-in for execute_run, for the tests of the harness's own logic (store, resume, searches)."""
from __future__ import annotations

import hashlib
import os

from ctrbench.runs.records import RunRecord
from ctrbench.runs.store import utc_now


def fake_metrics(spec) -> float:
    """A deterministic 'AUC' in [0.6, 0.8) from the config hash."""
    return 0.6 + int(hashlib.sha256(spec.config_hash.encode()).hexdigest()[:6], 16) / 16**6 * 0.2


def fake_execute_run(run, data_root=None, callbacks=None, record=None):
    """What execute_run returns, without training: for tests of the store/runner/searcher logic."""
    rec = record or RunRecord.from_spec(run, started_at=utc_now())
    auc = fake_metrics(run)
    rec.status = "failed" if run.params.get("net_dropout") == 0.99 else "ok"
    rec.auc, rec.valid_auc, rec.valid, rec.test = auc, auc, {"auc": auc}, {"auc": auc}
    rec.environment = {"cpu": "fake", "cores": 1, "torch": "x", "hostname": "h", "git_rev": "r"}
    rec.extra["executed_by"] = os.getpid()
    rec.finished_at = utc_now()
    return rec
