"""A suite's `checks:` (harness/checks.py): the entry against the best rival by more than the seed spread,
validated against the suite's entries and datasets, and written by the report into table.md and checks.csv."""
from __future__ import annotations

import pytest

from ctrbench.errors import ConfigError
from ctrbench.harness.checks import evaluate_check, overall
from ctrbench.harness.report import read_csv, write_report
from ctrbench.harness.suite import load_suite
from ctrbench.runs.records import RunRecord
from ctrbench.runs.store import RunStore

SUITE = """
name: chk
datasets: [{name: amazonelectronics_x1}, {name: kuaivideo_x1}]
seeds: [0, 1]
entries:
  - {name: fm, model: fm}
  - {name: dnn, model: dnn, grid: {params.net_dropout: [0.0, 0.1]}}
  - {name: din, model: din}
checks:
  - {name: din_beats_nonseq, entry: din, rivals: [fm, dnn]}
  - {name: din_logloss, entry: din, rivals: [fm], datasets: [kuaivideo_x1], metric: logloss}
"""

# (dataset, entry) -> per-seed AUC and logloss
AUC = {("amazonelectronics_x1", "fm"): (0.70, 0.71), ("amazonelectronics_x1", "dnn[net_dropout=0.0]"): (0.75, 0.76),
       ("amazonelectronics_x1", "dnn[net_dropout=0.1]"): (0.74, 0.74), ("amazonelectronics_x1", "din"): (0.80, 0.82),
       ("kuaivideo_x1", "fm"): (0.70, 0.74), ("kuaivideo_x1", "dnn[net_dropout=0.0]"): (0.60, 0.60),
       ("kuaivideo_x1", "dnn[net_dropout=0.1]"): (0.60, 0.61), ("kuaivideo_x1", "din"): (0.75, 0.76)}
LOGLOSS = {("kuaivideo_x1", "fm"): (0.50, 0.51), ("kuaivideo_x1", "din"): (0.45, 0.46)}


def _records(suite):
    out = []
    for spec in suite.runs:
        key = (spec.dataset, spec.entry)
        out.append(RunRecord.from_spec(spec, status="ok", auc=AUC[key][spec.seed],
                                       logloss=LOGLOSS.get(key, (0.5, 0.5))[spec.seed]))
    return out


def test_margin_spread_and_verdict_per_dataset(write_suite):
    suite = load_suite(write_suite(SUITE))
    recs = _records(suite)
    rows = {r["dataset"]: r for r in evaluate_check(suite.checks[0], recs, [d.name for d in suite.datasets])}
    amazon, kuai = rows["amazonelectronics_x1"], rows["kuaivideo_x1"]
    # the best rival is the best grid point by mean; margin 0.81 - 0.755, spread max(0.02, 0.01)
    assert amazon["best_rival"] == "dnn[net_dropout=0.0]"
    assert amazon["margin"] == pytest.approx(0.055) and amazon["spread"] == pytest.approx(0.02)
    assert amazon["verdict"] == "pass"
    # KuaiVideo: din 0.755 vs fm 0.72, but fm's seeds span 0.04 > margin 0.035 -> fail
    assert kuai["best_rival"] == "fm" and kuai["margin"] == pytest.approx(0.035)
    assert kuai["spread"] == pytest.approx(0.04) and kuai["verdict"] == "fail"
    assert overall(list(rows.values())) == "fail"
    # logloss: lower is better, so a positive margin is ours lower; one dataset only
    (ll,) = evaluate_check(suite.checks[1], recs, [d.name for d in suite.datasets])
    assert ll["dataset"] == "kuaivideo_x1" and ll["margin"] == pytest.approx(0.05) and ll["verdict"] == "pass"
    # one seed cannot show a spread: no verdict
    one = [r for r in recs if r.seed == 0]
    assert {r["verdict"] for r in evaluate_check(suite.checks[0], one, ["amazonelectronics_x1"])} == {"n/a"}
    # failed runs do not count
    for r in recs:
        if r.entry == "fm" and r.dataset == "kuaivideo_x1" and r.seed == 1:
            r.status = "failed"
    (k2,) = evaluate_check(suite.checks[0], recs, ["kuaivideo_x1"])
    assert k2["rival_seeds"] == 1 and k2["verdict"] == "n/a"


def test_report_writes_the_checks(write_suite, tmp_path):
    suite = load_suite(write_suite(SUITE))
    store = RunStore(tmp_path / "runs.sqlite")
    for r in _records(suite):
        store.put(r)
    paths = write_report(suite, store, tmp_path / "out", "ctrbench report chk.yaml")
    table = paths["table"].read_text()
    assert "## Checks" in table and "- **din_beats_nonseq**: fail" in table and "- **din_logloss**: pass" in table
    checks = read_csv(paths["checks"])
    assert list(checks["verdict"]) == ["pass", "fail", "pass"]


@pytest.mark.parametrize("bad,match", [
    ("  - {name: c, entry: dien, rivals: [fm]}\n", "unknown entry 'dien'"),
    ("  - {name: c, entry: din, rivals: [fm, xx]}\n", "unknown entry 'xx'"),
    ("  - {name: c, entry: din, rivals: [fm], datasets: [criteo_x1]}\n", "dataset 'criteo_x1'"),
    ("  - {name: c, entry: din, rivals: [fm], metric: ne}\n", "metric"),
])
def test_bad_check_is_a_config_error(write_suite, bad, match):
    with pytest.raises(ConfigError, match=match):
        load_suite(write_suite(SUITE.split("checks:\n")[0] + "checks:\n" + bad))
