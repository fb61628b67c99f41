"""The columnar on-disk cache: per split, row-major blocks in raw binary files opened as memmaps, plus a
JSON manifest (spec, vocabulary sizes, row counts, positive rates, source checksums).

Blocks: `categorical` int32 [N, n_categorical] (spec order), `pretrained` int32 [N, n_pretrained],
`numeric` float32 [N, n_numeric], `seq__<name>` int32 [N, max_len] left-padded, `label` float32 [N],
`group_id` int64 [N], `oracle_p` float32 [N] (twins). Pretrained vector tables live in `tables/<name>.npy`.
A split may alias another (`alias_of` in the manifest: BARS's valid = test) and then shares its files.
A cache is written into a `.partial-PID` folder that is renamed only after the manifest is written, so an
interrupted prepare never leaves a cache that looks complete; a failed one removes its folder, and the folders
of killed writers (their PID is gone) are removed by the next writer of the same cache.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctrbench.data.schema import DatasetSpec
from ctrbench.errors import DataError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def default_data_root() -> Path:
    return Path(os.environ.get("CTRBENCH_DATA_ROOT", Path.home() / ".cache" / "ctrbench"))


def cache_dir(data_root: str | os.PathLike | None, dataset: str, tag: str) -> Path:
    """Where the cache of `dataset` from source `tag` ("real" or a twin's tag) lives."""
    return Path(data_root or default_data_root()) / dataset / tag


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_partials(path: Path) -> list[Path]:
    """Remove the `.partial-PID` folders of `path` left by writers that died (SIGKILL, power loss); a live
    writer's folder stays. Returns the removed folders."""
    removed = []
    for tmp in path.parent.glob(path.name + ".partial-*"):
        pid = tmp.name.rsplit("-", 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


class CacheWriter:
    """Streams blocks into a new cache; `finalize` writes the manifest and publishes it atomically."""

    def __init__(self, path: str | os.PathLike, spec: DatasetSpec):
        self.path = Path(path)
        self.spec = spec
        self.tmp = self.path.with_name(self.path.name + f".partial-{os.getpid()}")
        if self.path.parent.exists():
            remove_stale_partials(self.path)
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        self._blocks: dict[str, dict[str, dict]] = {}  # split -> block -> {dtype, shape}
        self._label_sums: dict[str, float] = {}
        self._files = {}
        self._aliases: dict[str, str] = {}

    def append(self, split: str, blocks: dict[str, np.ndarray]) -> None:
        """Append one chunk of rows (every block with the same row count) to `split`."""
        rows = {len(a) for a in blocks.values()}
        if len(rows) != 1:
            raise DataError(f"chunk blocks disagree on row count: { {k: len(v) for k, v in blocks.items()} }")
        meta = self._blocks.setdefault(split, {})
        (self.tmp / split).mkdir(exist_ok=True)
        for name, arr in blocks.items():
            arr = np.ascontiguousarray(arr)
            info = meta.get(name)
            if info is None:
                info = meta[name] = {"dtype": arr.dtype.str, "shape": [0, *arr.shape[1:]]}
            elif np.dtype(info["dtype"]) != arr.dtype or list(arr.shape[1:]) != info["shape"][1:]:
                raise DataError(f"block {name!r} of split {split!r} changed dtype/shape between chunks")
            key = (split, name)
            if key not in self._files:
                self._files[key] = open(self.tmp / split / f"{name}.bin", "wb")
            self._files[key].write(arr.data if arr.size else b"")  # contiguous: no copy
            info["shape"][0] += len(arr)
        if "label" in blocks:
            self._label_sums[split] = self._label_sums.get(split, 0.0) + float(np.sum(blocks["label"], dtype=np.float64))

    def alias(self, split: str, of: str) -> None:
        """Record `split` as the same rows as the stored split `of` (BARS's valid = test), without a copy."""
        self._aliases[split] = of

    def add_table(self, name: str, table: np.ndarray) -> None:
        """A whole side table (e.g. pretrained vectors), stored as .npy."""
        (self.tmp / "tables").mkdir(exist_ok=True)
        np.save(self.tmp / "tables" / f"{name}.npy", table)

    def abort(self) -> None:
        for f in self._files.values():
            f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def finalize(self, vocab_sizes: dict[str, int], source: dict, extra: dict | None = None) -> "Cache":
        for f in self._files.values():
            f.close()
        splits = {}
        for split, blocks in self._blocks.items():
            rows = blocks["label"]["shape"][0] if "label" in blocks else next(iter(blocks.values()))["shape"][0]
            splits[split] = {
                "rows": rows,
                "positive_rate": (self._label_sums.get(split, 0.0) / rows) if rows else None,
                "blocks": blocks,
            }
        for split, of in self._aliases.items():
            if of not in splits:
                raise DataError(f"split {split!r} aliases {of!r}, which was never written")
            splits[split] = {**splits[of], "alias_of": of}
        manifest = {
            "format_version": FORMAT_VERSION,
            "dataset": self.spec.name,
            "spec": self.spec.to_dict(),
            "vocab_sizes": {k: int(v) for k, v in vocab_sizes.items()},
            "splits": splits,
            "source": source,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **(extra or {}),
            "complete": True,
        }
        with open(self.tmp / MANIFEST, "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.tmp, self.path)
        return Cache.open(self.path)


@dataclass
class SplitData:
    """One split of a cache: its row count and block memmaps."""

    name: str
    rows: int
    blocks: dict[str, np.ndarray]

    def __getitem__(self, block: str) -> np.ndarray:
        return self.blocks[block]

    def __contains__(self, block: str) -> bool:
        return block in self.blocks


class Cache:
    """A finished cache, opened read-only (memory-mapped)."""

    def __init__(self, path: Path, manifest: dict):
        self.path = path
        self.manifest = manifest
        self.spec = DatasetSpec.from_dict(manifest["spec"])
        self.vocab_sizes: dict[str, int] = manifest["vocab_sizes"]
        self._splits: dict[str, SplitData] = {}

    @classmethod
    def exists(cls, path: str | os.PathLike) -> bool:
        p = Path(path) / MANIFEST
        if not p.exists():
            return False
        try:
            return bool(json.loads(p.read_text()).get("complete"))
        except (OSError, json.JSONDecodeError):
            return False

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Cache":
        path = Path(path)
        mpath = path / MANIFEST
        if not mpath.exists():
            raise DataError("no finished cache here (missing manifest.json); run `ctrbench data prepare`", file=str(path))
        try:
            manifest = json.loads(mpath.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"corrupt manifest: {exc.msg}", file=str(mpath), line=exc.lineno) from None
        if not manifest.get("complete"):
            raise DataError("cache is incomplete (interrupted prepare?); prepare it again", file=str(mpath))
        if manifest.get("format_version") != FORMAT_VERSION:
            raise DataError(f"cache format {manifest.get('format_version')} != {FORMAT_VERSION}; prepare it again", file=str(mpath))
        return cls(path, manifest)

    @property
    def split_names(self) -> list[str]:
        return list(self.manifest["splits"])

    def split(self, name: str) -> SplitData:
        if name not in self.manifest["splits"]:
            raise DataError(f"split {name!r} not in cache; has {self.split_names}", file=str(self.path))
        if name not in self._splits:
            info = self.manifest["splits"][name]
            blocks = {}
            for block, meta in info["blocks"].items():
                shape = tuple(meta["shape"])
                file = self.path / info.get("alias_of", name) / f"{block}.bin"
                if shape[0] == 0:
                    blocks[block] = np.zeros(shape, dtype=np.dtype(meta["dtype"]))
                else:
                    blocks[block] = np.memmap(file, dtype=np.dtype(meta["dtype"]), mode="r", shape=shape)
            self._splits[name] = SplitData(name, info["rows"], blocks)
        return self._splits[name]

    def table(self, name: str) -> np.ndarray:
        return np.load(self.path / "tables" / f"{name}.npy", mmap_mode="r")

    def positive_rate(self, split: str) -> float:
        return self.manifest["splits"][split]["positive_rate"]
