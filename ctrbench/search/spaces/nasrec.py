"""The NASRec spaces (specs/search.md §2): `nasrec_small` (dense {FC, DP} | sparse {EFC}), `nasrec_full`
(dense {FC, DP, SG, Sum} | sparse {Attn, EFC}) and `nasrec_xlarge_zeros` (Full plus zero nodes), 7 blocks with
dense connectivity. A point is a NASRec architecture (ctrbench.models.nasrec.arch.NASRecPoint as JSON) and builds
the standalone `nasrec_subnet`.

`scale` multiplies the paper's widths (dense {16..1024}, sparse tokens {16, 32, 48, 64}) for CPU-sized runs:
scale 0.125 gives dense {2, 4, 8, 16, 32, 64, 96, 128} and tokens {2, 4, 6, 8}; the widths must stay distinct
(scale >= 1/16 keeps all eight dense widths apart). The embedding width (16), the 8 merger tokens and the
dot-product token count rule (round(sqrt(2 * widest dense))) are not scaled.
"""
from __future__ import annotations

import numpy as np

from ctrbench.models.nasrec.arch import (ARCH_CONFIGS, MACRO_FIELDS, MAX_INPUTS, MICRO_FIELDS, ArchConfig,
                                         NASRecPoint, draw_field, point_flops, sample_point)
from ctrbench.search.registry import SpaceOptionsError, register_space
from ctrbench.search.spaces.space import Space, SpacePointError, parse_point

EMBEDDING_DIM = 16  # NASRec's embedding width (the subnet's default)


class NASRecSpace(Space):
    """One NASRec space at one scale."""

    model = "nasrec_subnet"

    def __init__(self, name: str, cfg: ArchConfig, scale: float = 1.0):
        try:
            self.cfg = cfg.scaled(scale)
        except ValueError as exc:
            raise SpaceOptionsError(f"search space {name!r}: {exc}") from None
        self.name, self.scale = name, scale
        self.n = self.cfg.num_blocks

    # --- validity -------------------------------------------------------------------------------------------
    def validate(self, point) -> dict:
        p = parse_point(NASRecPoint, point, self.name)
        if len(p.blocks) != self.n:
            raise SpacePointError(self.name, "blocks", f"{len(p.blocks)} blocks; the space has {self.n}")
        if p.dp_tokens != self.cfg.k:
            raise SpacePointError(self.name, "dp_tokens", f"{p.dp_tokens}; the space's is {self.cfg.k}")
        for i, b in enumerate(p.blocks):
            for key, value, allowed in (("dense_node", b.dense_node, self.cfg.dense_nodes),
                                        ("sparse_node", b.sparse_node, self.cfg.sparse_nodes),
                                        ("dense_dim", b.dense_dim, self.cfg.dense_dims),
                                        ("sparse_dim", b.sparse_dim, self.cfg.sparse_dims)):
                if value not in allowed:
                    raise SpacePointError(self.name, f"blocks[{i}].{key}", f"{value!r} not in {list(allowed)}")
        return p.to_json_dict()

    # --- sampling and moves ---------------------------------------------------------------------------------
    def sample(self, rng) -> dict:
        return sample_point(self.cfg, rng).to_json_dict()

    def mutate(self, point, rng) -> dict:
        """NASRec's mutation: a random block, then (50/50) one macro field (an input list or the left/right
        source) or one micro field (the nodes, a width, a merger bit), redrawn."""
        i = int(rng.integers(self.n))
        fields = MACRO_FIELDS if rng.random() < 0.5 else MICRO_FIELDS
        f = fields[int(rng.integers(len(fields)))]
        blocks = [dict(b) for b in point["blocks"]]
        drawn = draw_field(self.cfg, i, f, rng)
        blocks[i].update({k: list(v) if isinstance(v, tuple) else v for k, v in drawn.items()})
        return {"dp_tokens": point["dp_tokens"], "blocks": blocks}

    def neighbours(self, point) -> list[dict]:
        """One source added to or removed from an input list (1-4 kept), another left/right source, another
        dense or sparse node (never both zeros), another width, a merger bit flipped."""
        out = []

        def with_(i, **kw):
            blocks = [dict(b) for b in point["blocks"]]
            blocks[i].update(kw)
            out.append({"dp_tokens": point["dp_tokens"], "blocks": blocks})

        for i, b in enumerate(point["blocks"]):
            for key in ("dense_idx", "sparse_idx"):
                cur = set(b[key])
                if len(cur) < MAX_INPUTS:
                    for j in range(i + 1):
                        if j not in cur:
                            with_(i, **{key: sorted(cur | {j})})
                if len(cur) > 1:
                    for j in sorted(cur):
                        with_(i, **{key: sorted(cur - {j})})
            for key in ("dense_left_idx", "dense_right_idx"):
                for j in range(i + 1):
                    if j != b[key]:
                        with_(i, **{key: j})
            for key, other, allowed in (("dense_node", "sparse_node", self.cfg.dense_nodes),
                                        ("sparse_node", "dense_node", self.cfg.sparse_nodes)):
                for v in allowed:
                    if v != b[key] and not (v == "zeros" and b[other] == "zeros"):
                        with_(i, **{key: v})
            for key, allowed in (("dense_dim", self.cfg.dense_dims), ("sparse_dim", self.cfg.sparse_dims)):
                for v in allowed:
                    if v != b[key]:
                        with_(i, **{key: v})
            for key in ("dense_sparse_interact", "deep_fm"):
                with_(i, **{key: 1 - b[key]})
        return out

    # --- encoding -------------------------------------------------------------------------------------------
    def _block_size(self) -> int:
        c = self.cfg
        return 4 * self.n + len(c.dense_nodes) + len(c.sparse_nodes) + len(c.dense_dims) + len(c.sparse_dims) + 2

    @property
    def encoding_size(self) -> int:
        return self.n * self._block_size()

    def encode(self, point) -> np.ndarray:
        """Per block: multi-hot dense and sparse sources, one-hot left and right source, one-hot dense node,
        sparse node, dense width and token count, then the two merger bits (NASRec's tokenizer, one-hot widths)."""
        c, n = self.cfg, self.n
        parts = []
        for b in self.validate(point)["blocks"]:
            v = np.zeros(self._block_size())
            v[list(b["dense_idx"])] = 1
            v[[n + j for j in b["sparse_idx"]]] = 1
            v[2 * n + b["dense_left_idx"]] = 1
            v[3 * n + b["dense_right_idx"]] = 1
            at = 4 * n
            for value, allowed in ((b["dense_node"], c.dense_nodes), (b["sparse_node"], c.sparse_nodes),
                                   (b["dense_dim"], c.dense_dims), (b["sparse_dim"], c.sparse_dims)):
                v[at + allowed.index(value)] = 1
                at += len(allowed)
            v[at], v[at + 1] = b["dense_sparse_interact"], b["deep_fm"]
            parts.append(v)
        return np.concatenate(parts)

    def decode(self, vector) -> dict:
        c, n = self.cfg, self.n
        vector = np.asarray(vector, dtype=np.float64)
        if vector.shape != (self.encoding_size,):
            raise SpacePointError(self.name, "encoding", f"shape {vector.shape}; expected ({self.encoding_size},)")
        blocks = []
        for v in vector.reshape(n, self._block_size()):
            b = {"dense_idx": [int(j) for j in np.flatnonzero(v[:n] > 0.5)],
                 "sparse_idx": [int(j) for j in np.flatnonzero(v[n:2 * n] > 0.5)],
                 "dense_left_idx": int(np.argmax(v[2 * n:3 * n])), "dense_right_idx": int(np.argmax(v[3 * n:4 * n]))}
            at = 4 * n
            for key, allowed in (("dense_node", c.dense_nodes), ("sparse_node", c.sparse_nodes),
                                 ("dense_dim", c.dense_dims), ("sparse_dim", c.sparse_dims)):
                b[key] = allowed[int(np.argmax(v[at:at + len(allowed)]))]
                at += len(allowed)
            b["dense_sparse_interact"], b["deep_fm"] = int(v[at] > 0.5), int(v[at + 1] > 0.5)
            blocks.append(b)
        return self.validate({"dp_tokens": c.k, "blocks": blocks})

    # --- cost and candidates --------------------------------------------------------------------------------
    def flops(self, point, spec) -> int:
        n_dense = len(spec.numeric)
        return point_flops(NASRecPoint.model_validate(self.validate(point)), n_dense, len(spec.features) - n_dense,
                           EMBEDDING_DIM)

    def candidate(self, point) -> tuple[dict, dict]:
        return {"point": self.validate(point), "embedding_dim": EMBEDDING_DIM}, {}

    def knobs(self, point) -> dict:
        out = {}
        for i, b in enumerate(self.validate(point)["blocks"]):
            for key in ("dense_idx", "sparse_idx"):
                out[f"blocks[{i}].{key}.count"] = len(b[key])
                out.update({f"blocks[{i}].{key}∋{j}": int(j in b[key]) for j in range(i + 1)})
            for key in ("dense_left_idx", "dense_right_idx", "dense_node", "sparse_node", "dense_dim", "sparse_dim",
                        "dense_sparse_interact", "deep_fm"):
                out[f"blocks[{i}].{key}"] = b[key]
        return out

    def choices(self) -> dict[str, tuple]:
        c, out = self.cfg, {}
        for i in range(self.n):
            for key in ("dense_idx", "sparse_idx"):
                out[f"blocks[{i}].{key}.count"] = tuple(range(1, min(i + 1, MAX_INPUTS) + 1))
                out.update({f"blocks[{i}].{key}∋{j}": (0, 1) if i else (1,) for j in range(i + 1)})
            for key in ("dense_left_idx", "dense_right_idx"):
                out[f"blocks[{i}].{key}"] = tuple(range(i + 1))
            out[f"blocks[{i}].dense_node"], out[f"blocks[{i}].sparse_node"] = c.dense_nodes, c.sparse_nodes
            out[f"blocks[{i}].dense_dim"], out[f"blocks[{i}].sparse_dim"] = c.dense_dims, c.sparse_dims
            out[f"blocks[{i}].dense_sparse_interact"] = out[f"blocks[{i}].deep_fm"] = (0, 1)
        return out


@register_space("nasrec_small")
def nasrec_small(scale: float = 1.0) -> NASRecSpace:
    """NASRec-Small (NASRec 'autoctr', the space SiGeo searches): dense {FC, DP}, sparse {EFC}."""
    return NASRecSpace("nasrec_small", ARCH_CONFIGS["small"], scale)


@register_space("nasrec_full")
def nasrec_full(scale: float = 1.0) -> NASRecSpace:
    """NASRec-Full (NASRec 'xlarge'): dense {FC, DP, SG, Sum}, sparse {Attn, EFC}."""
    return NASRecSpace("nasrec_full", ARCH_CONFIGS["full"], scale)


@register_space("nasrec_xlarge_zeros")
def nasrec_xlarge_zeros(scale: float = 1.0) -> NASRecSpace:
    """NASRec 'xlarge-zeros': Full plus zero nodes (a block's dense or sparse node may be zero, not both)."""
    return NASRecSpace("nasrec_xlarge_zeros", ARCH_CONFIGS["xlarge_zeros"], scale)
