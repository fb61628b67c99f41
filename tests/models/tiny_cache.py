"""A tiny planted-logistic cache of any dataset's layout (used until/alongside the real twins)."""
from __future__ import annotations

import numpy as np

from ctrbench.data.cache import CacheWriter
from ctrbench.data.registry import get_spec
from ctrbench.data.schema import Kind


def build_tiny_cache(name: str, path, rows: int = 3000, seed: int = 0, vocab: int = 40, strength: float = 1.5,
                     invert_valid: bool = False):
    """Write and open a cache of dataset `name` whose labels follow a planted logistic model.
    invert_valid=True flips the validation split's click model (learning the train split makes it worse)."""
    spec = get_spec(name)
    rng = np.random.default_rng(seed)
    vocab_sizes, effects = {}, {}
    for f in spec.categorical:
        vocab_sizes[f.name] = vocab
        effects[f.name] = rng.normal(0, strength / np.sqrt(len(spec.categorical)), vocab)
    tables = {}
    for f in spec.pretrained:
        vocab_sizes[f.name] = vocab
        t = rng.normal(0, 1, (vocab, f.pretrained_dim)).astype(np.float32)
        t[0] = 0
        tables[f.name] = t
        effects[f.name] = t @ rng.normal(0, strength / np.sqrt(f.pretrained_dim), f.pretrained_dim)
    for f in spec.sequences:
        vocab_sizes[f.name] = vocab_sizes[f.vocab_owner]
    n_split = {"train": rows, "valid": rows // 4, "test": rows // 4}
    numeric_w = rng.normal(0, 0.5, len(spec.numeric))
    writer = CacheWriter(path, spec)
    for split, n in n_split.items():
        logit = np.full(n, -0.5)
        blocks = {}
        if spec.categorical:
            cat = rng.integers(1, vocab, (n, len(spec.categorical))).astype(np.int32)
            cat[rng.random(cat.shape) < 0.05] = 0
            blocks["categorical"] = cat
            for j, f in enumerate(spec.categorical):
                logit += effects[f.name][cat[:, j]] * (cat[:, j] != 0)
        if spec.numeric:
            num = rng.normal(0, 1, (n, len(spec.numeric))).astype(np.float32)
            blocks["numeric"] = num
            logit += num @ numeric_w
        if spec.pretrained:
            pre = rng.integers(1, vocab, (n, len(spec.pretrained))).astype(np.int32)
            blocks["pretrained"] = pre
            for j, f in enumerate(spec.pretrained):
                logit += effects[f.name][pre[:, j]]
        for f in spec.sequences:
            seq = rng.integers(1, vocab, (n, f.max_len)).astype(np.int32)
            lengths = rng.integers(0, min(f.max_len, 12) + 1, n)
            seq[np.arange(f.max_len)[None, :] < (f.max_len - lengths)[:, None]] = 0  # left padding
            blocks[f"seq__{f.name}"] = seq
            eff = effects[f.vocab_owner][seq] * (seq != 0)
            logit += eff.sum(1) / np.maximum(lengths, 1)
        if invert_valid and split == "valid":
            logit = -logit
        p = 1 / (1 + np.exp(-logit))
        blocks["label"] = (rng.random(n) < p).astype(np.float32)
        blocks["oracle_p"] = p.astype(np.float32)
        if spec.group_id is not None:
            blocks["group_id"] = rng.integers(0, max(n // 20, 2), n).astype(np.int64)
        writer.append(split, blocks)
    for k, t in tables.items():
        writer.add_table(k, t)
    return writer.finalize(vocab_sizes, {"kind": "tiny-test"})
