"""BatchLoader: epoch coverage across ranks, seeded shuffles, last-batch policy, and Batch contents vs the cache."""
import numpy as np
import pytest
import torch

from ctrbench.data.cache import CacheWriter
from ctrbench.data.loader import BatchLoader
from ctrbench.data.registry import get_spec
from ctrbench.data.synthetic import generate_twin

N = 1003  # not a multiple of any batch size or world size used below


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """An AmazonElectronics-shaped cache whose every block encodes the row number r."""
    spec = get_spec("amazonelectronics_x1")
    r = np.arange(N)
    seq = np.zeros((N, 100), dtype=np.int32)
    seq[:, -1] = r + 1  # left-padded: one id at the right end...
    seq[r % 2 == 0, -2] = 7  # ...and a second one on even rows
    w = CacheWriter(tmp_path_factory.mktemp("idx") / "cache", spec)
    for lo in range(0, N, 400):  # several chunks
        s = slice(lo, min(N, lo + 400))
        w.append("train", {
            "categorical": np.stack([r[s] + 1, r[s] % 5 + 1], axis=1).astype(np.int32),
            "seq__item_history": seq[s], "seq__cate_history": np.where(seq[s] > 0, seq[s] % 6 + 1, 0),
            "label": (r[s] % 3 == 0).astype(np.float32), "group_id": r[s].astype(np.int64) * 10,
            "oracle_p": (r[s] / N).astype(np.float32),
        })
    return w.finalize({"item_id": N + 2, "cate_id": 7}, {"kind": "test"})


def _rows(batch) -> np.ndarray:
    return batch.sparse.to_dense()[:, 0].numpy() - 1


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("shuffle", [False, True])
def test_every_row_once_per_epoch_across_ranks(indexed, world, shuffle):
    seen = []
    for rank in range(world):
        loader = BatchLoader(indexed, "train", 64, shuffle=shuffle, seed=3, rank=rank, world_size=world)
        loader.set_epoch(2)
        batches = list(loader)
        assert len(batches) == len(loader)
        got = np.concatenate([_rows(b) for b in batches])
        assert len(got) == N // world  # every rank the same count; the N % world leftover rows are dropped
        seen.append(got)
    allrows = np.concatenate(seen)
    assert len(np.unique(allrows)) == len(allrows) == world * (N // world)
    if not shuffle:
        assert np.array_equal(np.sort(allrows), np.arange(world * (N // world)))


def test_shuffle_is_seeded_per_epoch(indexed):
    def order(seed, epoch):
        loader = BatchLoader(indexed, "train", 100, shuffle=True, seed=seed)
        loader.set_epoch(epoch)
        return [_rows(b) for b in loader]

    a, b = order(0, 1), order(0, 1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))  # same (seed, epoch) -> same batches
    assert not np.array_equal(np.concatenate(a), np.concatenate(order(0, 2)))  # epochs differ
    assert not np.array_equal(np.concatenate(a), np.concatenate(order(1, 1)))  # seeds differ
    assert sorted(np.concatenate(a)) == list(range(N))
    assert not np.array_equal(np.concatenate(a), np.arange(N))


def test_last_batch_policy(indexed):
    keep = BatchLoader(indexed, "train", 100)
    sizes = [b.batch_size for b in keep]
    assert len(keep) == len(sizes) == 11 and sizes[-1] == 3 and sum(sizes) == N
    drop = BatchLoader(indexed, "train", 100, drop_last=True, shuffle=True)
    sizes = [b.batch_size for b in drop]
    assert len(drop) == len(sizes) == 10 and set(sizes) == {100}
    capped = BatchLoader(indexed, "train", 100, max_rows=250)
    assert [b.batch_size for b in capped] == [100, 100, 50]


def test_batch_contents_follow_the_contract(indexed):
    loader = BatchLoader(indexed, "train", 50, shuffle=True, seed=1)
    batch = next(iter(loader))
    r = _rows(batch)
    assert batch.sparse.keys == ["item_id", "cate_id"] and batch.sparse.values.dtype == torch.int64
    assert batch.sparse.offsets.tolist() == list(range(2 * 50 + 1))
    assert np.array_equal(batch.sparse.to_dense()[:, 1].numpy(), r % 5 + 1)
    assert batch.label.dtype == torch.float32 and np.array_equal(batch.label.numpy(), (r % 3 == 0).astype(np.float32))
    assert np.array_equal(batch.group_id.numpy(), r * 10)
    assert np.allclose(batch.oracle_p.numpy(), r / N)
    seq = batch.sequences["item_history"]
    assert seq.dtype == torch.int64 and seq.shape == (50, 100)
    assert np.array_equal(seq[:, -1].numpy(), r + 1)
    assert np.array_equal(batch.lengths["item_history"].numpy(), np.where(r % 2 == 0, 2, 1))
    assert batch.dense.shape == (50, 0)


def test_rejects_bad_arguments(indexed):
    with pytest.raises(ValueError):
        BatchLoader(indexed, "train", 0)
    with pytest.raises(ValueError):
        BatchLoader(indexed, "train", 10, rank=2, world_size=2)


@pytest.fixture(scope="module")
def criteo_twin(tmp_path_factory):
    return generate_twin(get_spec("criteo_x1"), tmp_path_factory.mktemp("c") / "twin", rows=6000, seed=1)


@pytest.fixture(scope="module")
def kuai_twin(tmp_path_factory):
    return generate_twin(get_spec("kuaivideo_x1"), tmp_path_factory.mktemp("k") / "twin", rows=6000, seed=1)


def test_twin_batches_match_cache_rows(criteo_twin):
    split = criteo_twin.split("valid")
    loader = BatchLoader(criteo_twin, "valid", 256, shuffle=True, seed=5)
    rows = np.sort(loader.order()[:256])
    batch = next(iter(loader))
    assert np.array_equal(batch.sparse.to_dense().numpy(), np.asarray(split["categorical"])[rows])
    assert np.array_equal(batch.dense.numpy(), np.asarray(split["numeric"])[rows])
    assert np.array_equal(batch.label.numpy(), np.asarray(split["label"])[rows])
    assert np.array_equal(batch.oracle_p.numpy(), np.asarray(split["oracle_p"])[rows])
    assert batch.dense.shape[1] == 13 and batch.sparse.keys == [f"C{i}" for i in range(1, 27)]
    assert batch.group_id is None and batch.sequences == {}
    # in-order iteration (contiguous copies) yields the same rows as gathering their indices
    first = next(iter(BatchLoader(criteo_twin, "valid", 100)))
    again = BatchLoader(criteo_twin, "valid", 100).gather(np.arange(100))
    assert torch.equal(first.sparse.values, again.sparse.values) and torch.equal(first.dense, again.dense)


def test_sequential_twin_batches(kuai_twin):
    loader = BatchLoader(kuai_twin, "train", 512, shuffle=True)
    batch = next(iter(loader))
    spec = kuai_twin.spec
    assert set(batch.sequences) == {f.name for f in spec.sequences}
    for name, seq in batch.sequences.items():
        assert seq.dtype == torch.int64 and seq.shape == (512, 100)
        lengths = batch.lengths[name]
        assert torch.equal(lengths, (seq != 0).sum(1))
        # left padding: after the first non-zero id, every id is non-zero
        nz = (seq != 0).int()
        assert torch.equal(nz, torch.sort(nz, dim=1).values)
    assert set(batch.pretrained) == {"item_emb"} and batch.pretrained["item_emb"].shape == (512,)
    assert batch.group_id is not None and batch.oracle_p is not None
    assert torch.equal(batch.group_id, batch.sparse.to_dense()[:, 0].long())  # group id = user_id
