"""The run/report/models commands guard their inputs (issue 13): reading a store never creates one, a report
with no runs writes nothing, a corrupt store is one located line, --only/--seeds values are checked, dry runs
say what will be recovered, runs busy elsewhere are not "finished before", results go where --help says, and
`ctrbench models` states the conventions that differ from BARS. Runs use the fast stand-in (fake_execute)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from ctrbench.cli import main
from ctrbench.harness.suite import load_suite
from ctrbench.runs.store import RunStore, process_start_time

SUITE = """
name: guards
defaults: {train: {max_epochs: 1}, dataset: {rows: 3000}}
datasets: [{name: criteo_x1}]
seeds: [0, 1]
entries:
  - {name: lr, model: lr}
  - {name: fm, model: fm, seeds: [0]}
"""


def cli(*argv) -> int:
    return main([str(a) for a in argv])


def _one_error_line(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert all(w in lines[0] for w in words), lines[0]


def test_report_reads_and_never_creates_or_blanks(write_suite, tmp_path, data_root, fake_execute, capsys):
    suite = write_suite(SUITE)
    store, out = tmp_path / "runs.sqlite", tmp_path / "report"
    assert cli("run", suite, "--store", store, "--data-root", data_root) == 0
    assert cli("report", suite, "--store", store, "--out", out) == 0
    table = (out / "table.md").read_text()
    capsys.readouterr()
    typo = tmp_path / "runs.sqlit"
    assert cli("report", suite, "--store", typo, "--out", out) == 2
    _one_error_line(capsys.readouterr().err, "no run store at", str(typo))
    assert not typo.exists() and (out / "table.md").read_text() == table
    other = tmp_path / "other.sqlite"
    RunStore(other)  # a real store, without this suite's runs
    assert cli("report", suite, "--store", other, "--out", out) == 2
    _one_error_line(capsys.readouterr().err, "holds none of suite 'guards'", "left as it was")
    assert (out / "table.md").read_text() == table
    assert cli("run", suite, "--store", typo, "--dry-run") == 0 and not typo.exists()  # a dry run only reads


@pytest.mark.parametrize("damage", ["text", "zeroed header"])
def test_a_corrupt_store_is_one_line_naming_the_file(damage, write_suite, tmp_path, data_root, capsys):
    suite, store = write_suite(SUITE), tmp_path / "runs.sqlite"
    if damage == "text":
        store.write_text("runs,auc\nlr,0.7\n")
    else:
        RunStore(store).close()
        with open(store, "r+b") as f:
            f.write(b"\0" * 100)
    for argv in (("run", suite, "--store", store, "--data-root", data_root), ("report", suite, "--store", store),
                 ("run", suite, "--store", store, "--dry-run")):
        assert cli(*argv) == 2
        _one_error_line(capsys.readouterr().err, str(store), "move the file aside")


def test_a_store_that_cannot_be_created_is_one_line(write_suite, tmp_path, data_root, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli("run", write_suite(SUITE), "--store", blocker / "runs.sqlite", "--data-root", data_root) == 2
    _one_error_line(capsys.readouterr().err, "cannot create the run store's folder", str(blocker))


@pytest.mark.parametrize("option,value,words", [
    ("--only", "", "no entry name"), ("--only", ",", "no entry name"), ("--only", "lr,,fm", "empty entry name"),
    ("--seeds", "1,x", "invalid seeds"), ("--seeds", "-1", "invalid seeds"), ("--seeds", "", "invalid seeds"),
    ("--seeds", "1,1", "seed listed twice")])
def test_only_and_seeds_values_are_checked(option, value, words, write_suite, capsys):
    with pytest.raises(SystemExit) as ei:
        cli("run", write_suite(SUITE), option, value, "--dry-run")
    assert ei.value.code == 2 and words in capsys.readouterr().err


def test_seeds_from_the_command_line_replace_the_suites(write_suite, tmp_path, data_root, fake_execute, capsys):
    store = tmp_path / "runs.sqlite"
    assert cli("run", write_suite(SUITE), "--store", store, "--data-root", data_root, "--seeds", "5,6") == 0
    recs = RunStore(store, create=False).records()
    assert sorted((r.entry, r.seed) for r in recs) == [("fm", 5), ("fm", 6), ("lr", 5), ("lr", 6)]
    assert all(r.command.endswith("--seeds 5,6") for r in recs)


def test_missing_suite_file_names_what_was_looked_for(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "quick.yaml").write_text("name: quick\n")
    assert cli("run", "nosuch.yaml", "--dry-run") == 2
    err = capsys.readouterr().err
    assert "no suite file 'nosuch.yaml'" in err and ".yaml.yaml" not in err
    assert cli("run", "nosuch", "--dry-run") == 2
    assert "nor suites/nosuch.yaml; suites here: quick" in capsys.readouterr().err


@pytest.fixture
def other_process():
    """A live process that is not this one (a claimed run's owner elsewhere), and a dead one's pid."""
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        yield live.pid, dead.pid
    finally:
        live.kill()
        live.wait()


def _claim_as(store: RunStore, spec, pid: int) -> None:
    store.claim(spec)
    with store._tx() as c:
        c.execute("UPDATE runs SET pid=?, pid_start=? WHERE config_hash=?",
                  (pid, process_start_time(pid), spec.config_hash))


def test_dry_run_and_counts_tell_busy_from_dead_from_finished(write_suite, tmp_path, data_root, fake_execute,
                                                              other_process, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # rich: one table row per line
    live_pid, dead_pid = other_process
    path = write_suite(SUITE)
    store_path = tmp_path / "runs.sqlite"
    runs = load_suite(path).runs
    store = RunStore(store_path)
    _claim_as(store, runs[0], live_pid)
    _claim_as(store, runs[1], dead_pid)
    assert cli("run", path, "--store", store_path, "--dry-run") == 0
    out = capsys.readouterr().out
    assert f"running (pid {live_pid}" in out and "interrupted — will be recovered" in out
    assert cli("run", path, "--store", store_path, "--data-root", data_root) == 0
    out = capsys.readouterr().out
    assert ("2 run(s) executed, 0 skipped (finished before), 1 left to the other process(es) running them, "
            "1 interrupted run(s) recovered") in out
    assert store.get(runs[0].config_hash).status == "running" and store.get(runs[1].config_hash).status == "ok"


def test_results_default_beside_the_suite(tmp_path, monkeypatch, data_root, fake_execute, capsys):
    monkeypatch.chdir(tmp_path)
    for folder in ("suites", "elsewhere"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "s.yaml").write_text(SUITE.replace("name: guards", f"name: in_{folder}"))
    assert cli("run", "s", "--data-root", data_root, "--only", "lr") == 0  # a bare name: suites/s.yaml
    assert (tmp_path / "results" / "in_suites" / "runs.sqlite").is_file()
    assert cli("run", "elsewhere/s.yaml", "--data-root", data_root, "--only", "lr") == 0
    assert (tmp_path / "elsewhere" / "results" / "in_elsewhere" / "runs.sqlite").is_file()
    assert cli("report", "elsewhere/s.yaml") == 0
    assert (tmp_path / "elsewhere" / "results" / "in_elsewhere" / "table.md").is_file()
    with pytest.raises(SystemExit):
        cli("run", "--help")
    assert "results/ folder beside the suite file" in " ".join(capsys.readouterr().out.split())


def test_models_states_the_conventions(capsys):
    assert cli("models", "dnn") == 0
    out = " ".join(capsys.readouterr().out.split())
    for words in ("Id 0 is padding", "Numeric fields", "grad_clip None", "FuxiCTR clips gradients at norm 10",
                  "train_samples_per_s is", "train_seconds (per run) is"):
        assert words in out, words
