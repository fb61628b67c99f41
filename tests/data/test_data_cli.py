"""`ctrbench data prepare/verify/info/twin` through the command line entry point."""
import hashlib
import json

import pytest

from ctrbench.cli import main
from ctrbench.data.api import open_dataset, twin_tag
from ctrbench.data.cache import Cache, cache_dir
from ctrbench.data.registry import DATASETS, get_spec


def criteo_source(tmp_path, bad_line=None):
    src = tmp_path / "criteo_src"
    src.mkdir(exist_ok=True)
    lines = ["\t".join([str(i % 2)] + [str(i % 7)] * 13 + ["%08x" % (i % 3)] * 26) for i in range(50)]
    if bad_line is not None:
        lines[bad_line - 1] = lines[bad_line - 1].replace("\t", "\tx", 1)  # I1 = "x0"
    (src / "train.txt").write_text("\n".join(lines) + "\n")
    return src


def test_prepare_then_info(tmp_path, capsys):
    src, root = criteo_source(tmp_path), tmp_path / "root"
    assert main(["data", "prepare", "criteo", "--source", str(src), "--data-root", str(root), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "prepared criteo" in out and "train" in out and "dlrm-kaggle" in out
    path = cache_dir(root, "criteo", "real")
    assert Cache.exists(path)
    cache = Cache.open(path)
    assert cache.manifest["source"]["files"]["train.txt"]["md5"] == hashlib.md5((src / "train.txt").read_bytes()).hexdigest()
    assert main(["data", "info", "criteo", "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "real" in out and "log1p_clip0" in out
    assert main(["data", "info", "--data-root", str(root), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in listing] == list(DATASETS)
    assert next(d for d in listing if d["name"] == "criteo")["prepared"] == ["real"]


def test_prepare_bad_row_reports_where_and_skip_option(tmp_path, capsys):
    src, root = criteo_source(tmp_path, bad_line=7), tmp_path / "root"
    argv = ["data", "prepare", "criteo", "--source", str(src), "--data-root", str(root), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "file train.txt" in err and "line 7" in err and "field 'I1'" in err
    assert not Cache.exists(cache_dir(root, "criteo", "real"))
    assert main(argv + ["--on-bad-rows", "skip"]) == 0
    assert "bad rows skipped: train.txt 1" in capsys.readouterr().out
    assert Cache.open(cache_dir(root, "criteo", "real")).manifest["bad_rows_skipped"] == {"train.txt": 1}


def test_verify_md5(tmp_path, capsys, monkeypatch):
    src = criteo_source(tmp_path)
    assert main(["data", "verify", "criteo", "--source", str(src), "--no-progress"]) == 1  # not the release
    assert "MISMATCH" in capsys.readouterr().out
    digest = hashlib.md5((src / "train.txt").read_bytes()).hexdigest()
    monkeypatch.setitem(get_spec("criteo").md5, "train.txt", digest)
    assert main(["data", "verify", "criteo", "--source", str(src), "--no-progress"]) == 0
    assert "ok" in capsys.readouterr().out


def test_unknown_dataset_lists_names(tmp_path, capsys):
    assert main(["data", "info", "kriteo"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'kriteo'" in err and "taobaoad_x1" in err
    assert main(["data", "prepare", "avazu", "--source", str(tmp_path), "--no-progress"]) == 2
    assert get_spec("avazu").published_at in capsys.readouterr().err


def test_twin_builds_the_synthetic_cache(tmp_path, capsys):
    root = tmp_path / "root"
    assert main(["data", "twin", "avazu_x1", "--rows", "3000", "--seed", "1", "--data-root", str(root)]) == 0
    assert "avazu_x1 twin" in capsys.readouterr().out
    assert [p.name for p in (root / "avazu_x1").iterdir()] == [twin_tag(3000, 1)]
    with pytest.raises(SystemExit):
        main(["data", "twin"])


def test_twin_cache_is_keyed_by_generator_version(tmp_path, monkeypatch):
    """A changed generator must build a new twin, never silently reuse one cached by an older version."""
    from ctrbench.data import synthetic

    old = open_dataset("avazu_x1", rows=500, seed=3, data_root=tmp_path)
    monkeypatch.setattr(synthetic, "GENERATOR_VERSION", synthetic.GENERATOR_VERSION + 1)
    new = open_dataset("avazu_x1", rows=500, seed=3, data_root=tmp_path)
    assert old.path != new.path
    assert sorted(p.name for p in (tmp_path / "avazu_x1").iterdir()) == sorted([old.path.name, new.path.name])


def test_twin_takes_generator_options(tmp_path, capsys):
    """`data twin` builds a twin variant in its own cache folder; bad --shares is a clear error naming the parts."""
    root = tmp_path / "root"
    args = ["data", "twin", "avazu_x1", "--rows", "3000", "--data-root", str(root)]
    assert main(args + ["--card-ratio", "0.002", "--shares", '{"first": 0.8, "pair": 0.2}']) == 0
    (variant,) = (root / "avazu_x1").iterdir()
    assert variant.name == twin_tag(3000, 0, {"card_ratio": 0.002, "shares": {"first": 0.8, "pair": 0.2}})
    capsys.readouterr()
    assert main(args + ["--shares", "{first: 1}"]) == 2
    assert "--shares is not JSON" in capsys.readouterr().err
    assert main(args + ["--shares", '{"recent": 1.0}']) == 2
    err = capsys.readouterr().err
    assert "recent" in err and "pair" in err
