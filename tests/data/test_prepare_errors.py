"""Bad input: missing files name the layout and where the data is published; malformed rows raise DataError
with file, line and field, or are skipped and counted; unknown names list the valid ones; an interrupted
prepare never leaves a cache that looks complete; corrupt .gz and invalid UTF-8 are located errors; stale
.partial folders of dead writers are removed."""
import gzip

import numpy as np
import pytest

from ctrbench.data import prepare as prepare_mod
from ctrbench.data.api import open_dataset
from ctrbench.data.cache import Cache, cache_dir
from ctrbench.data.prepare import prepare_real
from ctrbench.data.registry import DATASETS, get_spec
from ctrbench.errors import DataError, UnknownNameError

FIELDS = ["label"] + [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)]


def criteo_line(label="0", ints=None, cats=None):
    ints = ints if ints is not None else [str(i) for i in range(13)]
    cats = cats if cats is not None else ["68fd1e64"] * 26
    return "\t".join([label] + ints + cats)


def write_lines(path, lines, gz=False):
    data = ("\n".join(lines) + "\n").encode()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def criteo_dir(tmp_path, lines):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    write_lines(src / "train.txt", lines)
    return src


def run(spec, src, tmp_path, **kw):
    return prepare_real(spec, src, tmp_path / "out", progress=False, **kw)


# --------------------------------------------------------------------------- missing files


@pytest.mark.parametrize("name, present, missing", [
    ("criteo_x1", ["train.csv", "test.csv"], "valid.csv"),
    ("kuaivideo_x1", ["train.csv", "test.csv"], "item_visual_emb_dim64.h5"),
    ("criteo", [], "train.txt"),
    ("avazu", [], "train.csv"),
])
def test_missing_file_names_layout_and_publisher(tmp_path, name, present, missing):
    spec = get_spec(name)
    for f in present:
        (tmp_path / f).write_text("label\n")
    with pytest.raises(DataError) as exc:
        run(spec, tmp_path, tmp_path)
    msg = str(exc.value)
    assert missing in msg and spec.published_at in msg and "expected layout" in msg
    assert exc.value.file.endswith(missing)


def test_missing_terabyte_days_are_listed(tmp_path):
    for d in range(20):
        write_lines(tmp_path / f"day_{d}", [criteo_line()])
    with pytest.raises(DataError, match=r"day_20, day_21, day_22, day_23.*day_\{0\.\.23\}") as exc:
        run(get_spec("criteo_terabyte"), tmp_path, tmp_path)
    assert get_spec("criteo_terabyte").published_at in str(exc.value)


def test_missing_source_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        run(get_spec("avazu_x1"), tmp_path / "nope", tmp_path)


def test_x1_header_lacking_a_column(tmp_path):
    header = "label,user_id,item_id,cate_id,item_history"  # cate_history missing
    for f in ("train.csv", "test.csv"):
        (tmp_path / f).write_text(header + "\n1,u,1,2,3\n")
    with pytest.raises(DataError) as exc:
        run(get_spec("amazonelectronics_x1"), tmp_path, tmp_path)
    assert (exc.value.file, exc.value.line, exc.value.field) == ("train.csv", 1, "cate_history")


# --------------------------------------------------------------------------- malformed rows


def good_lines(n):
    return [criteo_line(str(i % 2)) for i in range(n)]


@pytest.mark.parametrize("bad, line_no, field, reason", [
    (criteo_line(ints=["1"] * 12), 5, "C26", "wrong field count"),  # one field short: the last is missing
    (criteo_line() + "\textra", 5, "extra field 41 after C26", "wrong field count"),
    (criteo_line(ints=["1", "2", "x7"] + ["0"] * 10), 5, "I3", "not a number"),
    (criteo_line(ints=["1", "nan"] + ["0"] * 11), 5, "I2", "not a number"),
    (criteo_line(label="2"), 5, "label", "label must be 0 or 1"),
    (criteo_line(label=""), 5, "label", "label is missing"),
    (criteo_line(label="yes"), 5, "label", "label is not a number"),
])
def test_malformed_row_raises_with_file_line_field(tmp_path, bad, line_no, field, reason):
    lines = good_lines(30)
    lines[line_no - 1] = bad
    src = criteo_dir(tmp_path, lines)
    with pytest.raises(DataError, match=reason) as exc:
        run(get_spec("criteo"), src, tmp_path)
    e = exc.value
    assert (e.file, e.line, e.field) == ("train.txt", line_no, field)
    assert "train.txt" in str(e) and f"line {line_no}" in str(e)
    assert not Cache.exists(tmp_path / "out")


def test_skip_counts_bad_rows_per_file_and_keeps_positions(tmp_path):
    lines = good_lines(70)
    lines[3] = criteo_line(ints=["1"] * 12)  # wrong field count
    lines[10] = criteo_line(ints=["a"] + ["0"] * 12)  # non-numeric
    lines[20] = criteo_line(label="3")
    lines[65] = criteo_line(label="0.5")  # in the last pseudo-day
    src = criteo_dir(tmp_path, lines)
    cache = run(get_spec("criteo"), src, tmp_path, on_bad_rows="skip")
    m = cache.manifest
    assert m["bad_rows_skipped"] == {"train.txt": 4}
    assert m["bad_rows_by_reason"]["train.txt"] == {"wrong field count": 1, "not a number": 1,
                                                    "label must be 0 or 1": 2}
    # the 7 pseudo-days are cut by line position: 70 lines -> 10 per day; bad lines still occupy theirs
    rows = {s: cache.split(s).rows for s in ("train", "test", "valid")}
    assert rows == {"train": 57, "test": 5, "valid": 4}  # day 6 = lines 61-70: test 61-65, valid 66-70
    np.testing.assert_array_equal(np.asarray(cache.split("test")["label"]), [0, 1, 0, 1, 0])


def test_x1_non_numeric_value_and_skip(tmp_path):
    header = "clk,btag_his,cate_his,brand_his,userid,cms_segid,cms_group_id,final_gender_code,age_level," \
             "pvalue_level,shopping_level,occupation,new_user_class_level ,adgroup_id,cate_id,campaign_id," \
             "customer,brand,price,pid,btag"
    row = "0,1^1,2^3,4^5,u1,0,1,1,2,0,1,0,3,11,12,13,14,15,{price},430548_1007,1"
    lines = [header] + [row.format(price="9.5")] * 6
    lines[4] = row.format(price="cheap")
    for f in ("train.csv", "test.csv"):
        write_lines(tmp_path / f, lines)
    spec = get_spec("taobaoad_x1")
    with pytest.raises(DataError) as exc:
        run(spec, tmp_path, tmp_path)
    assert (exc.value.file, exc.value.line, exc.value.field) == ("train.csv", 5, "price")
    cache = run(spec, tmp_path, tmp_path, on_bad_rows="skip")
    assert cache.manifest["bad_rows_skipped"] == {"train.csv": 1, "test.csv": 1}
    assert cache.split("train").rows == 5


def test_terabyte_bad_hex_and_log_domain(tmp_path):
    for d in range(24):
        write_lines(tmp_path / f"day_{d}", good_lines(2))
    write_lines(tmp_path / "day_4", [criteo_line(), criteo_line(cats=["zz"] + ["0a"] * 25)])
    spec = get_spec("criteo_terabyte")
    with pytest.raises(DataError, match="hexadecimal") as exc:
        run(spec, tmp_path, tmp_path)
    assert (exc.value.file, exc.value.line, exc.value.field) == ("day_4", 2, "C1")
    write_lines(tmp_path / "day_4", good_lines(2))
    write_lines(tmp_path / "day_23.gz", [criteo_line(), criteo_line(ints=["1", "-3"] + ["0"] * 11)], gz=True)
    (tmp_path / "day_23").unlink()
    with pytest.raises(DataError, match="log_plus3") as exc:
        run(spec, tmp_path, tmp_path)
    assert (exc.value.file, exc.value.line, exc.value.field) == ("day_23.gz", 2, "I2")


def test_avazu_bad_hour(tmp_path):
    header = "id,click,hour,C1,banner_pos,site_id,site_domain,site_category,app_id,app_domain,app_category," \
             "device_id,device_ip,device_model,device_type,device_conn_type,C14,C15,C16,C17,C18,C19,C20,C21"
    row = "1000009418151094273,0,{hour},1005,0,1fbe01fe,f3845767,28905ebd,ecad2386,7801e8d9,07d7df22,a99f214a," \
          "ddd2926e,44956a24,1,2,15706,320,50,1722,0,35,-1,79"
    for hour, reason in (("14103124", "YYMMDDHH"), ("14102000", "outside the training window")):
        write_lines(tmp_path / "train.csv", [header, row.format(hour="14102100"), row.format(hour=hour)])
        with pytest.raises(DataError, match=reason) as exc:
            run(get_spec("avazu"), tmp_path, tmp_path)
        assert (exc.value.line, exc.value.field) == (3, "hour")


# --------------------------------------------------------------------------- unknown names


def test_unknown_dataset_and_feature_list_valid_names():
    with pytest.raises(UnknownNameError) as exc:
        get_spec("criteo_x2")
    assert all(name in str(exc.value) for name in DATASETS)
    with pytest.raises(UnknownNameError) as exc:
        get_spec("criteo").feature("C27")
    assert "C26" in str(exc.value) and "I1" in str(exc.value)
    with pytest.raises(DataError, match="on_bad_rows"):
        prepare_real(get_spec("criteo"), ".", "/nonexistent", on_bad_rows="ignore", progress=False)


# --------------------------------------------------------------------------- interrupted prepare


def test_failure_after_train_was_written_leaves_no_complete_cache(tmp_path):
    lines = good_lines(70)
    lines[66] = criteo_line(label="7")  # in the valid half of day 6: train and test were written already
    src = criteo_dir(tmp_path, lines)
    root = tmp_path / "root"
    path = cache_dir(root, "criteo", "real")
    with pytest.raises(DataError, match="line 67"):
        prepare_real(get_spec("criteo"), src, path, progress=False, chunk_rows=8)
    assert not Cache.exists(path)
    assert not any(p.name.startswith("real.partial") for p in path.parent.iterdir())
    with pytest.raises(DataError, match="ctrbench data prepare criteo"):
        open_dataset("criteo", "real", data_root=root)


def test_interrupt_mid_pass_keeps_previous_cache_and_no_partial(tmp_path, monkeypatch):
    src = criteo_dir(tmp_path, good_lines(40))
    path = tmp_path / "root" / "criteo" / "real"
    first = prepare_real(get_spec("criteo"), src, path, progress=False)
    created = first.manifest["created"]
    calls = {"n": 0}
    real_encode = prepare_mod.encode_rows

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_encode(*a, **kw)

    monkeypatch.setattr(prepare_mod, "encode_rows", flaky)
    with pytest.raises(KeyboardInterrupt):
        prepare_real(get_spec("criteo"), src, path, progress=False, chunk_rows=4)
    assert Cache.open(path).manifest["created"] == created  # the old complete cache is untouched
    assert sorted(p.name for p in path.parent.iterdir()) == ["real"]


def test_no_training_rows_is_an_error(tmp_path):
    header = "label,user_id,item_id,cate_id,item_history,cate_history\n"
    (tmp_path / "train.csv").write_text(header)
    (tmp_path / "test.csv").write_text(header + "1,u1,3,4,1^2,5^6\n")
    with pytest.raises(DataError, match="no training rows"):
        run(get_spec("amazonelectronics_x1"), tmp_path, tmp_path)
    assert not Cache.exists(tmp_path / "out")


# --------------------------------------------------------------------------- corrupt gzip, invalid UTF-8, stale partials


def corrupt(kind, data):
    """A .gz of `data` damaged in one way: cut in half, wrong CRC, or not gzip at all."""
    z = gzip.compress(data)
    return {"truncated": z[: len(z) // 2], "bad_crc": z[:-8] + bytes(4) + z[-4:], "not_gzip": data}[kind]


@pytest.mark.parametrize("kind, after", [("truncated", None), ("bad_crc", 400), ("not_gzip", 0)])
def test_corrupt_gz_is_a_located_data_error(tmp_path, kind, after):
    lines = good_lines(400)
    (tmp_path / "train.txt.gz").write_bytes(corrupt(kind, ("\n".join(lines) + "\n").encode()))
    with pytest.raises(DataError, match="corrupt or truncated gzip") as exc:
        run(get_spec("criteo"), tmp_path, tmp_path)
    assert exc.value.file == "train.txt.gz"
    if after is None:  # cut in half: some complete lines decompress before the cut, not all
        assert 1 < exc.value.line < 400
    else:
        assert exc.value.line == after + 1 and (f"after line {after}" if after else "before its first line") \
            in str(exc.value)


def test_corrupt_gz_day_read_by_the_stream_is_located(tmp_path):
    for d in range(24):
        write_lines(tmp_path / f"day_{d}", good_lines(2))
    data = ("\n".join(good_lines(300)) + "\n").encode()
    (tmp_path / "day_5").unlink()
    (tmp_path / "day_5.gz").write_bytes(corrupt("truncated", data))  # first line intact: fails in the stream
    with pytest.raises(DataError, match="corrupt or truncated gzip") as exc:
        run(get_spec("criteo_terabyte"), tmp_path, tmp_path)
    assert exc.value.file == "day_5.gz" and 1 < exc.value.line < 300


def test_invalid_utf8_names_line_and_field(tmp_path):
    lines = [line.encode() for line in good_lines(50)]
    lines[36] = lines[36][:-8] + b"\xff\xfe00000a"  # C26 of line 37
    (tmp_path / "train.txt.gz").write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    with pytest.raises(DataError, match="invalid UTF-8") as exc:
        run(get_spec("criteo"), tmp_path, tmp_path)
    assert (exc.value.file, exc.value.line, exc.value.field) == ("train.txt.gz", 37, "C26")


def test_partial_folders_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    import subprocess
    import sys

    src = criteo_dir(tmp_path, good_lines(40))
    path = tmp_path / "root" / "criteo" / "real"
    path.parent.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (path.parent / f"real.partial-{dead.stdout.strip()}").mkdir()  # a killed prepare's leftovers
        (path.parent / f"real.partial-{live.pid}").mkdir()  # a prepare still running
        prepare_real(get_spec("criteo"), src, path, progress=False)
        assert sorted(p.name for p in path.parent.iterdir()) == ["real", f"real.partial-{live.pid}"]
    finally:
        live.kill()
        live.wait()
