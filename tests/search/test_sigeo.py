"""SiGeo's warm-up protocol: the warm-up trains on exactly its share of the training rows, a warmed supernet is
reused from disk, the scored points are the bench's, and a scoring job killed with SIGKILL resumes from the run
store to the scores an uninterrupted job gives."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from pydantic import ValidationError

from ctrbench.runs.store import RunStore
from ctrbench.search.registry import get_searcher_class
from ctrbench.search.sigeo import StudyConfig, bench_candidates, load_config, score_study, study_scores
from ctrbench.search.warmup import WarmupConfig, build_supernet, cached_warm_up, warm_up


def test_warm_up_trains_on_its_share_of_the_rows(tiny_cache):
    train_rows = tiny_cache.split("train").rows
    sup, res = warm_up(tiny_cache, WarmupConfig(fraction=0.25, batch_size=64, epochs=2))
    assert res.rows == round(0.25 * train_rows) and res.steps == 2 * -(-res.rows // 64) and res.seconds > 0
    assert 0 < res.cpu_seconds
    assert not sup.training and res.mean_loss > 0
    fresh, zero = build_supernet(tiny_cache, WarmupConfig(fraction=0.0)), warm_up(tiny_cache, WarmupConfig(fraction=0))
    assert zero[1].rows == zero[1].steps == 0
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), zero[0].state_dict().values()))
    assert not all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), sup.state_dict().values()))
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        WarmupConfig(fraction=1.5)


def test_cached_warm_up_reuses_the_supernet(tiny_cache, tmp_path):
    cfg = WarmupConfig(fraction=0.1, batch_size=64)
    a, ra = cached_warm_up(tiny_cache, cfg, tmp_path)
    b, rb = cached_warm_up(tiny_cache, cfg, tmp_path)
    assert ra == rb and all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_the_scored_points_are_the_benchs():
    cfg = StudyConfig(name="b", budget=7, model_params={"numeric_norm": True})
    cls = get_searcher_class("random")
    want = cls(cls.Params(space="nasrec_small", space_options={"scale": 0.125}, budget=7, seed=0)).candidates()
    got = bench_candidates(cfg)
    assert [c.point for c in got] == [c.point for c in want] and all(c.params["numeric_norm"] for c in got)


def test_scoring_only_some_levels_refuses_levels_the_study_lacks(tiny_cache, tmp_path):
    cfg = StudyConfig(name="l", budget=2, levels=[0.0, 1.0])
    with pytest.raises(ValueError, match=r"levels \[0.5\] are not among study 'l'"):
        score_study(cfg, RunStore(tmp_path / "s.sqlite"), tmp_path, cache=tiny_cache, levels=[0.5])


def test_config_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nlevels: [0.0]\nbudgett: 3\n")
    with pytest.raises(SystemExit, match=r"s.yaml: budgett: Extra inputs are not permitted"):
        load_config(path)


STUDY = dict(name="t", budget=4, levels=[0.0, 0.5], oneshot_levels=[0.5], oneshot_steps=2, n_batches=2,
             batch_size=32, proxies=["zico", "sigeo", "naswot", "params"], model_params={"numeric_norm": True},
             warmup={"batch_size": 64})
KILL_AT = 6  # of 12 evaluations: level 0's four proxies, then two of level 0.5's

CHILD = textwrap.dedent("""
    import os, signal, sys
    import torch
    from ctrbench.data.cache import Cache
    from ctrbench.runs.store import RunStore
    from ctrbench.search import journal, sigeo
    torch.set_num_threads(1)
    original, count = journal.StoreJournal.append, [0]
    def append(self, e):
        original(self, e)
        count[0] += 1
        if count[0] == {kill_at}:
            os.kill(os.getpid(), signal.SIGKILL)
    journal.StoreJournal.append = append
    sigeo.score_study(sigeo.StudyConfig(**{study!r}), RunStore({store!r}), {work!r}, cache=Cache.open({cache!r}))
""")


def _scores(cfg, store):
    return study_scores(cfg, store).drop(columns=["proxy_seconds", "oneshot_seconds"]).sort_values(
        ["level", "index"]).reset_index(drop=True)


def test_a_killed_scoring_job_resumes_from_the_store(tiny_cache, tmp_path, monkeypatch):
    cfg, store_path, work = StudyConfig(**STUDY), str(tmp_path / "s.sqlite"), str(tmp_path / "work")
    child = CHILD.format(kill_at=KILL_AT, study=STUDY, store=store_path, work=work, cache=str(tiny_cache.path))
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode == -9, proc.stderr
    store = RunStore(store_path)
    assert len(store.evaluations()) == KILL_AT
    from ctrbench.search import journal

    appended, original = [], journal.StoreJournal.append
    monkeypatch.setattr(journal.StoreJournal, "append", lambda self, e: (appended.append(e), original(self, e)))
    score_study(cfg, store, work, cache=tiny_cache, log=lambda m: None)
    assert len(appended) == 12 - KILL_AT  # only what the killed job had not stored
    monkeypatch.undo()
    rows = store.evaluations()
    assert len(rows) == 12 and {r["kind"] for r in rows} == {"proxy", "inherit"}
    fresh = RunStore(tmp_path / "fresh.sqlite")
    score_study(cfg, fresh, tmp_path / "work2", cache=tiny_cache, log=lambda m: None)
    resumed, uninterrupted = _scores(cfg, store), _scores(cfg, fresh)
    assert list(resumed.columns) == list(uninterrupted.columns) and len(resumed) == 8
    assert resumed.drop(columns=["warmup_seconds"]).equals(uninterrupted.drop(columns=["warmup_seconds"]))
    assert resumed["oneshot"].notna().sum() == 4
