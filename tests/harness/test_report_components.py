"""Reports of models with components (an ensemble's members): per-component metrics and diagnostics, mean ± std
over seeds, only from ok runs."""
import pytest

from ctrbench.harness.report import SuiteRuns, component_rows, components_markdown
from ctrbench.runs.records import RunRecord


def _rec(seed, auc_a, w_a, status="ok"):
    return RunRecord(config_hash=f"h{seed}{status}", entry="cetnet", dataset="d", seed=seed, status=status,
                     components={"a": {"auc": auc_a, "gauc": None, "logloss": 0.5}, "b": {"auc": 0.6, "logloss": 0.6}},
                     diagnostics={"weight/a": w_a, "weight/b": 1 - w_a})


def test_component_rows_average_over_seeds_of_ok_runs():
    rows = component_rows(SuiteRuns([_rec(0, 0.70, 0.6), _rec(1, 0.72, 0.4), _rec(2, 0.1, 0.9, status="failed"),
                                     RunRecord(config_hash="plain", entry="lr", dataset="d")]))
    by = {(r["component"], r["kind"]): r for r in rows}
    assert set(by) == {("a", "metrics"), ("b", "metrics"), ("weight/a", "diagnostic"), ("weight/b", "diagnostic")}
    assert by[("a", "metrics")]["auc_mean"] == pytest.approx(0.71)
    assert by[("weight/a", "diagnostic")]["value_mean"] == pytest.approx(0.5)
    assert by[("a", "metrics")]["gauc_mean"] is None
    table = components_markdown(rows)
    assert "| d | cetnet | a | 0.7100 ± 0.0141 |" in table and "weight/b" in table
    assert component_rows(SuiteRuns([RunRecord(config_hash="plain", entry="lr", dataset="d", status="ok")])) == []
