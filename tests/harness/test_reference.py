"""The suite's optional `reference:` block: validated against the suite's entries and datasets, and rendered by
the report beside real-data rows (the twin oracle beside synthetic rows)."""
from __future__ import annotations

import pytest

from ctrbench.errors import ConfigError
from ctrbench.harness.report import SuiteRuns, markdown_table, summarize
from ctrbench.harness.suite import load_suite
from ctrbench.runs.records import RunRecord

SUITE = """
name: ref
datasets:
  - {name: amazonelectronics_x1, source: real}
  - {name: taobaoad_x1}
seeds: [0, 1]
entries:
  - {name: fm, model: fm}
  - {name: dnn, model: dnn}
reference:
  source: "Paper, Table 2"
  values:
    fm: {amazonelectronics_x1: {gauc: 0.8494, auc: 0.8485, logloss: 0.5060}, taobaoad_x1: {auc: 0.6231}}
"""


def _records(suite):
    out = []
    for i, spec in enumerate(suite.runs):
        rec = RunRecord.from_spec(spec, status="ok", auc=0.8 + 0.001 * i, gauc=0.79, logloss=0.45)
        if spec.source == "synthetic":
            rec.oracle_auc, rec.oracle_gauc, rec.oracle_logloss = 0.9, 0.89, 0.39
        out.append(rec)
    return out


def test_reference_goes_beside_real_rows_and_the_oracle_beside_twins(write_suite):
    suite = load_suite(write_suite(SUITE))
    rows = {(r["dataset"], r["entry"]): r for r in summarize(SuiteRuns(_records(suite)), suite.reference)}
    real_fm = rows[("amazonelectronics_x1", "fm")]
    assert (real_fm["ref_gauc"], real_fm["ref_auc"], real_fm["ref_logloss"]) == (0.8494, 0.8485, 0.5060)
    assert rows[("amazonelectronics_x1", "dnn")]["ref_auc"] is None  # the paper has no such row
    assert rows[("taobaoad_x1", "fm")]["ref_auc"] is None  # a twin never shows the real data's numbers
    table = markdown_table(list(rows.values()), suite.reference.source).splitlines()
    line = {(c[1].strip(), c[2].strip()): c for c in (ln.split("|") for ln in table[2:])}
    assert "Paper, Table 2: 0.8494 / 0.8485 / 0.5060" in line[("amazonelectronics_x1", "fm")][9]
    assert line[("amazonelectronics_x1", "dnn")][9].strip() == ""
    assert "oracle: 0.8900 / 0.9000 / 0.3900" in line[("taobaoad_x1", "dnn")][9]


@pytest.mark.parametrize("bad,match", [
    ("    din: {amazonelectronics_x1: {auc: 0.88}}\n", "unknown entry 'din'"),
    ("    fm: {criteo_x1: {auc: 0.8}}\n", "dataset 'criteo_x1'"),
    ("    fm: {taobaoad_x1: {aucc: 0.8}}\n", "aucc"),
])
def test_bad_reference_is_a_config_error(write_suite, bad, match):
    text = SUITE.split("  values:\n")[0] + "  values:\n" + bad
    with pytest.raises(ConfigError, match=match):
        load_suite(write_suite(text))
