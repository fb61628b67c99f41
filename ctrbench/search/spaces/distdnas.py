"""`distdnas`: the DistDNAS-style interaction space (ctrbench.models.interaction_net; specs/search.md §6, §9.8).
A point picks, per block, one dense module and one sparse module: {"blocks": [{"dense": op, "sparse": op}, ...]}.
It builds the standalone `dnas_subnet`; `dnas_supernet` (supernet_params) holds all of them, so a DNAS search's
argmax is a point of this space. The module list and the chain wiring are ctrbench's choice (the paper's are
NOT FOUND); the options narrow the module sets and set the block count and widths."""
from __future__ import annotations

import numpy as np

from ctrbench.models.interaction_net import DENSE_OPS, SLOTS, SPARSE_OPS, InteractionPoint, point_flops
from ctrbench.search.registry import SpaceOptionsError, register_space
from ctrbench.search.spaces.space import Space, SpacePointError, parse_point


class InteractionSpace(Space):
    name = "distdnas"
    model = "dnas_subnet"

    def __init__(self, num_blocks: int, dense_dim: int, embedding_dim: int, dense_ops, sparse_ops):
        self.ops = {"dense": tuple(dense_ops), "sparse": tuple(sparse_ops)}
        for slot, ops in self.ops.items():
            bad = [op for op in ops if op not in SLOTS[slot]]
            if not ops or bad or len(set(ops)) != len(ops):
                raise SpaceOptionsError(f"search space 'distdnas': {slot}_ops {list(ops)} must be distinct, "
                                        f"non-empty and from {list(SLOTS[slot])}")
        if num_blocks < 1 or dense_dim < 1 or embedding_dim < 1:
            raise SpaceOptionsError(f"search space 'distdnas': num_blocks, dense_dim and embedding_dim must be >= 1 "
                                    f"(got {num_blocks}, {dense_dim}, {embedding_dim})")
        self.n, self.dense_dim, self.embedding_dim = num_blocks, dense_dim, embedding_dim

    def slots(self):
        return [(i, slot) for i in range(self.n) for slot in ("dense", "sparse")]

    def validate(self, point) -> dict:
        p = parse_point(InteractionPoint, point, self.name)
        if len(p.blocks) != self.n:
            raise SpacePointError(self.name, "blocks", f"{len(p.blocks)} blocks; the space has {self.n}")
        for i, slot in self.slots():
            op = getattr(p.blocks[i], slot)
            if op not in self.ops[slot]:
                raise SpacePointError(self.name, f"blocks[{i}].{slot}", f"{op!r} not in {list(self.ops[slot])}")
        return p.to_json_dict()

    def point_of(self, choice: dict[str, list[int]]) -> dict:
        """The point of per-slot op indices ({"dense": [i per block], "sparse": [...]}, e.g. an argmax)."""
        return self.validate({"blocks": [{slot: self.ops[slot][int(choice[slot][i])] for slot in ("dense", "sparse")}
                                         for i in range(self.n)]})

    def sample(self, rng) -> dict:
        return self.point_of({slot: rng.integers(len(ops), size=self.n) for slot, ops in self.ops.items()})

    def mutate(self, point, rng) -> dict:
        i, slot = self.slots()[int(rng.integers(2 * self.n))]
        blocks = [dict(b) for b in point["blocks"]]
        blocks[i][slot] = self.ops[slot][int(rng.integers(len(self.ops[slot])))]
        return {"blocks": blocks}

    def neighbours(self, point) -> list[dict]:
        out = []
        for i, slot in self.slots():
            for op in self.ops[slot]:
                if op != point["blocks"][i][slot]:
                    blocks = [dict(b) for b in point["blocks"]]
                    blocks[i][slot] = op
                    out.append({"blocks": blocks})
        return out

    @property
    def encoding_size(self) -> int:
        return self.n * (len(self.ops["dense"]) + len(self.ops["sparse"]))

    def encode(self, point) -> np.ndarray:
        """Per block: one-hot dense module, one-hot sparse module."""
        parts = []
        for i, slot in self.slots():
            v = np.zeros(len(self.ops[slot]))
            v[self.ops[slot].index(self.validate(point)["blocks"][i][slot])] = 1
            parts.append(v)
        return np.concatenate(parts)

    def decode(self, vector) -> dict:
        vector = np.asarray(vector, dtype=np.float64)
        if vector.shape != (self.encoding_size,):
            raise SpacePointError(self.name, "encoding", f"shape {vector.shape}; expected ({self.encoding_size},)")
        choice, at = {"dense": [], "sparse": []}, 0
        for _, slot in self.slots():
            k = len(self.ops[slot])
            choice[slot].append(int(np.argmax(vector[at:at + k])))
            at += k
        return self.point_of(choice)

    def flops(self, point, spec) -> int:
        n_dense = len(spec.numeric)
        return point_flops(InteractionPoint.model_validate(self.validate(point)), n_dense,
                           len(spec.features) - n_dense, self.embedding_dim, self.dense_dim)

    def candidate(self, point) -> tuple[dict, dict]:
        return {"point": self.validate(point), "dense_dim": self.dense_dim, "embedding_dim": self.embedding_dim}, {}

    def supernet_params(self) -> dict:
        """The `dnas_supernet` params holding every point of this space."""
        return {"num_blocks": self.n, "dense_dim": self.dense_dim, "embedding_dim": self.embedding_dim,
                "dense_ops": list(self.ops["dense"]), "sparse_ops": list(self.ops["sparse"])}

    def knobs(self, point) -> dict:
        p = self.validate(point)
        return {f"blocks[{i}].{slot}": p["blocks"][i][slot] for i, slot in self.slots()}

    def choices(self) -> dict[str, tuple]:
        return {f"blocks[{i}].{slot}": self.ops[slot] for i, slot in self.slots()}


@register_space("distdnas")
def distdnas(num_blocks: int = 4, dense_dim: int = 64, embedding_dim: int = 16, dense_ops: tuple = DENSE_OPS,
             sparse_ops: tuple = SPARSE_OPS) -> InteractionSpace:
    """DistDNAS-style interactions: per block a dense module {fc, dp, dcn, fm, gating, skip} and a sparse module
    {efc, attn, skip} (ctrbench's list; see ctrbench.models.interaction_net)."""
    return InteractionSpace(num_blocks, dense_dim, embedding_dim, dense_ops, sparse_ops)
