"""The default job's bar (suites/quick.yaml `checks:`): every model above LR on both twins, by more than the seed
spread; the gap to the oracle is reported, never a check."""
from pathlib import Path

from ctrbench.harness.checks import evaluate_check, overall
from ctrbench.harness.suite import load_suite
from ctrbench.runs.records import RunRecord

QUICK = Path(__file__).resolve().parents[2] / "suites" / "quick.yaml"


def _verdicts(suite, auc):
    records = [RunRecord.from_spec(spec, status="ok", auc=auc(spec.entry, spec.seed)) for spec in suite.runs
               if spec.search_id is None]
    names = [d.name for d in suite.datasets]
    return {c.name: overall(evaluate_check(c, records, names)) for c in suite.checks}


def test_every_model_of_the_quick_job_is_checked_against_lr_on_both_twins():
    suite = load_suite(QUICK)
    models = {spec.entry for spec in suite.runs if spec.search_id is None} - {"lr"}
    assert {c.entry for c in suite.checks} == models
    assert all(c.rivals == ["lr"] and c.datasets is None and c.metric == "auc" for c in suite.checks)
    assert set(_verdicts(suite, lambda e, s: 0.70 + 0.001 * s + (0.0 if e == "lr" else 0.02)).values()) == {"pass"}
    # a model whose margin over LR is within the seed spread fails its check, and only it
    def auc(entry, seed):  # LR 0.70; every model 0.003 above it, DLRM's two seeds 0.010 apart
        return 0.70 + (0.0 if entry == "lr" else 0.003) + (0.010 * seed if entry == "dlrm" else 0.0)

    verdicts = _verdicts(suite, auc)
    assert verdicts.pop("dlrm_above_lr") == "fail" and set(verdicts.values()) == {"pass"}
