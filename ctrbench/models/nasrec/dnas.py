"""DNAS over the NASRec spaces (issue 16 item 1; specs/search.md §2, §9.8): `nasrec_dnas_supernet` holds the
NASRec supernet's blocks (every node at its largest width over every earlier source) and relaxes each of a
block's choices with Gumbel-softmax weights of its own architecture logits, so one search covers a whole NASRec
point (ctrbench's relaxation; NASRec itself searches by sampling, and Rankitect's DNAS is unpublished):

  dense_node, sparse_node      categorical over the space's nodes        output = sum_o w_o * node_o
  dense_dim, sparse_dim        categorical over the widths               output = sum_d w_d * node(x, d)
  dense_in, sparse_in          one on/off gate per earlier source        input slot j scaled by its gate
  left, right (sg/sum spaces)  categorical over earlier sources          the binary nodes' operands
  interact, deep_fm            off/on                                    the mergers scaled by the 'on' weight

A node at width d computes exactly what the standalone subnet's node of width d computes (ops.py), so for
one-hot weights the forward is the subnet's (`pin(point)`; NASRecSubnet.inherit copies the weights). The weights
of every width share one matrix product (the prefix LayerNorm differs per width). `expected_flops` is E[F] of
arch.point_flops under the independent choices -- exact for one-hot probabilities -- and `discretise` maps the
logits to a point: per-slot argmax; sources with P(on) > 0.5, at least one and at most four (the most probable).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ctrbench.models.layers.gumbel import ArchParameters, gumbel_softmax
from ctrbench.models.nasrec.arch import MAX_INPUTS, MERGER_TOKENS, NASRecPoint
from ctrbench.models.nasrec.ops import ElasticProjection, pad_last, prefix_norm
from ctrbench.models.nasrec.supernet import NASRecSupernet
from ctrbench.models.registry import register

MASKED = -1.0e4  # the logit of a source a block cannot read (softmax weight 0; finite, so logits stay JSON)


def scale(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x times a weight per batch (a 0-dim w) or per example (w [B])."""
    return x * (w if w.dim() == 0 else w.view(-1, *([1] * (x.dim() - 1))))


def mixed_projection(proj: ElasticProjection, x: torch.Tensor, widths, w: torch.Tensor) -> torch.Tensor:
    """sum_k w_k * proj(x, widths[k]) with one matrix product: the widths share the output prefix."""
    y = F.linear(x, proj.lin.weight, proj.lin.bias)
    out = 0
    for k, d in enumerate(widths):
        z = prefix_norm(proj.norm, y[..., :d])
        out = out + scale(pad_last(F.relu(z) if proj.relu else z, proj.out_w), w[..., k])
    return out


@register("nasrec_dnas_supernet")
class NASRecDNASSupernet(ArchParameters, NASRecSupernet):
    """The NASRec supernet with Gumbel-softmax mixing of every choice (see the module docstring)."""

    class Params(NASRecSupernet.Params):
        hard: bool = Field(False, description="straight-through Gumbel-softmax: one-hot forward, soft gradient")
        sample_per: Literal["example", "batch"] = Field("example", description="one Gumbel sample per example or "
                                                        "per batch")
        gumbel_seed: int = Field(0, description="seed of the Gumbel noise")

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        c, n = self.cfg, self.cfg.num_blocks
        self.binary = bool({"sg", "sum"} & set(c.dense_nodes))
        shapes = {"dense_node": (n, len(c.dense_nodes)), "sparse_node": (n, len(c.sparse_nodes)),
                  "dense_dim": (n, len(c.dense_dims)), "sparse_dim": (n, len(c.sparse_dims)),
                  "interact": (n, 2), "deep_fm": (n, 2), "dense_in": (n, n, 2), "sparse_in": (n, n, 2)}
        if self.binary:
            shapes.update(left=(n, n), right=(n, n))
        self.alpha = nn.ParameterDict({k: nn.Parameter(torch.zeros(s)) for k, s in shapes.items()})
        reach = torch.arange(n).view(1, n) <= torch.arange(n).view(n, 1)  # block i reads sources 0..i
        self.register_buffer("source_mask", torch.where(reach, 0.0, MASKED), persistent=False)
        self.register_buffer("dense_widths", torch.tensor(c.dense_dims, dtype=torch.float64), persistent=False)
        self.register_buffer("sparse_widths", torch.tensor(c.sparse_dims, dtype=torch.float64), persistent=False)
        self.tau = 1.0
        self.generator = torch.Generator().manual_seed(self.params.gumbel_seed)
        self.pinned: dict[str, torch.Tensor] | None = None

    # --- architecture parameters -------------------------------------------------------------------------------
    def logits(self) -> dict[str, torch.Tensor]:
        """slot -> logits, a source no block can read masked to MASKED (differentiable)."""
        out = dict(self.alpha.items())
        for k in ("dense_in", "sparse_in"):
            out[k] = out[k] + torch.stack([torch.zeros_like(self.source_mask), self.source_mask], -1)
        for k in ("left", "right"):
            if k in out:
                out[k] = out[k] + self.source_mask
        return out

    def arch_logits(self) -> dict[str, torch.Tensor]:
        """A detached copy of `logits()`."""
        return {k: v.detach().clone() for k, v in self.logits().items()}

    def probabilities(self) -> dict[str, torch.Tensor]:
        """slot -> softmax probabilities; for the source gates P(on) [blocks, sources] (differentiable)."""
        return {k: _on(F.softmax(v, -1), k) for k, v in self.logits().items()}

    def sample_weights(self, batch_size: int) -> dict[str, torch.Tensor]:
        """The mixing weights of one forward: pinned one-hots, Gumbel-softmax samples (training) or the plain
        softmax (eval); per example the leading dim is the batch."""
        if self.pinned is not None:
            return self.pinned
        if not self.training:
            return self.probabilities()
        out = {}
        for k, v in self.logits().items():
            v = v.expand(batch_size, *v.shape) if self.params.sample_per == "example" else v
            out[k] = _on(gumbel_softmax(v, self.tau, hard=self.params.hard, generator=self.generator), k)
        return out

    def pin(self, point: NASRecPoint | dict | None) -> None:
        """Fix the weights to `point`'s one-hots (None: back to sampling)."""
        if point is None:
            self.pinned = None
            return
        point, c = self.check(point), self.cfg
        w = {k: torch.zeros(v.shape[:2]) for k, v in self.alpha.items()}
        for i, b in enumerate(point.blocks):
            for k, v in (("dense_node", c.dense_nodes.index(b.dense_node)),
                         ("sparse_node", c.sparse_nodes.index(b.sparse_node)),
                         ("dense_dim", c.dense_dims.index(b.dense_dim)),
                         ("sparse_dim", c.sparse_dims.index(b.sparse_dim)),
                         ("interact", b.dense_sparse_interact), ("deep_fm", b.deep_fm)):
                w[k][i, v] = 1.0
            w["dense_in"][i, list(b.dense_idx)] = 1.0
            w["sparse_in"][i, list(b.sparse_idx)] = 1.0
            if self.binary:
                w["left"][i, b.dense_left_idx] = w["right"][i, b.dense_right_idx] = 1.0
        self.pinned = w

    def log_probability(self, point: NASRecPoint | dict) -> float:
        """log P(point) under the softmax of the logits (independent choices; a source gate counts on and off)."""
        self.pin(point)
        chosen, self.pinned = self.pinned, None
        with torch.no_grad():
            total = 0.0
            for k, p in self.probabilities().items():
                p = p.double().clamp(1e-300, 1.0)
                if k in ("dense_in", "sparse_in"):
                    reach = (self.source_mask == 0).double()
                    on = chosen[k].double()
                    total += float((reach * (on * p.log() + (1 - on) * (1 - p).clamp_min(1e-300).log())).sum())
                else:
                    total += float((chosen[k].double() * p.log()).sum())
        return total

    # --- forward ------------------------------------------------------------------------------------------------
    def forward(self, batch) -> torch.Tensor:
        c = self.cfg
        dense0 = batch.dense if self.dense_norm is None else self.dense_norm(batch.dense)
        ds, ts = [dense0], [self.embedding(batch)]
        w = self.sample_weights(ts[0].shape[0])
        for i, blk in enumerate(self.blocks):
            src = range(i + 1)
            x = torch.cat([scale(ds[j], w["dense_in"][..., i, j]) for j in src], -1)
            tok = torch.cat([scale(ts[j], w["sparse_in"][..., i, j]) for j in src], 1)
            wd, wt = w["dense_dim"][..., i, :], w["sparse_dim"][..., i, :]
            left = right = None
            if self.binary:
                left = torch.cat([scale(ds[j], w["left"][..., i, j]) for j in src], -1)
                right = torch.cat([scale(ds[j], w["right"][..., i, j]) for j in src], -1)
            dense = 0
            for o, node in enumerate(c.dense_nodes):
                if node != "zeros":
                    out = self._dense_node(blk, node, x, tok, left, right, wd)
                    dense = dense + scale(out, w["dense_node"][..., i, o])
            sparse = 0
            for o, node in enumerate(c.sparse_nodes):
                if node == "efc":
                    out = mixed_projection(blk.nodes[node].proj, tok.transpose(1, 2), c.sparse_dims, wt).transpose(1, 2)
                elif node == "attn":
                    out = sum(scale(blk.nodes[node](tok, t), wt[..., k]) for k, t in enumerate(c.sparse_dims))
                else:
                    continue
                sparse = sparse + scale(out, w["sparse_node"][..., i, o])
            merged = scale(blk.to_tokens(dense), w["interact"][..., i, 1])
            s = sparse.sum(1)
            fm = mixed_projection(blk.fm.proj, s * s - (sparse * sparse).sum(1), c.dense_dims, wd)
            ds.append(dense + scale(fm, w["deep_fm"][..., i, 1]))
            ts.append(torch.cat([sparse, merged], 1))
        return self.head(torch.cat([ds[-1], ts[-1].flatten(1)], dim=1)).squeeze(1)

    def _dense_node(self, blk, node: str, x, tok, left, right, wd) -> torch.Tensor:
        m, dims = blk.nodes[node], self.cfg.dense_dims
        if node == "fc":
            return mixed_projection(m, x, dims, wd)
        if node == "dp":
            t = torch.cat([m.dense_proj(x).unsqueeze(1), m.token_proj(tok.transpose(1, 2)).transpose(1, 2)], 1)
            return mixed_projection(m.out, torch.bmm(t, t.transpose(1, 2))[:, m.li, m.lj], dims, wd)
        if node == "sum":  # the pair layout holds every source once: left's and right's weights add
            return mixed_projection(m, left + right, dims, wd)
        return mixed_projection(m.proj, right * torch.sigmoid(m.gate(left)), dims, wd)  # sg

    # --- cost and discretisation ------------------------------------------------------------------------------
    def expected_flops(self, probs: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """E[arch.point_flops] under independent choices with `probs` (default: the softmax of the logits);
        differentiable, and exact for one-hot probabilities."""
        p = {k: v.double() for k, v in (probs or self.probabilities()).items()}
        c, emb, k = self.cfg, float(self.embedding_dim), float(self.cfg.k)
        dd, td = self.dense_widths, self.sparse_widths
        ew = [torch.tensor(float(self.n_dense), dtype=torch.float64)]
        ew2 = [ew[0] ** 2]
        et = [torch.tensor(float(self.n_sparse), dtype=torch.float64)]
        total = torch.zeros((), dtype=torch.float64)
        for i in range(c.num_blocks):
            e_w, e_w2 = torch.stack(ew), torch.stack(ew2)
            din = p["dense_in"][i, :i + 1] @ e_w
            tin = p["sparse_in"][i, :i + 1] @ torch.stack(et)
            d, t = p["dense_dim"][i] @ dd, p["sparse_dim"][i] @ td
            cost = {"fc": 2 * din * d, "zeros": d * 0,
                    "dp": 2 * din * emb + 2 * emb * tin * k + 2 * (k + 1) ** 2 * emb + 2 * (k * (k + 1) // 2) * d}
            if self.binary:
                pl, pr = p["left"][i, :i + 1], p["right"][i, :i + 1]
                same = pl * pr
                cost["sum"] = 2 * d * (pl @ e_w + pr @ e_w - same @ e_w)
                e_lr = (pl @ e_w) * (pr @ e_w) - same @ (e_w * e_w) + same @ e_w2
                cost["sg"] = 2 * e_lr + 2 * (pr @ e_w) * d
            node = sum(p["dense_node"][i, o] * cost[n] for o, n in enumerate(c.dense_nodes))
            t2 = p["sparse_dim"][i] @ (td * td)
            scost = {"efc": 2 * emb * tin * t, "zeros": t * 0,
                     "attn": 2 * emb * tin * t + 12 * t * emb * emb + 4 * t2 * emb}  # arch.block_flops' terms
            node = node + sum(p["sparse_node"][i, o] * scost[n] for o, n in enumerate(c.sparse_nodes))
            on_int, on_fm = p["interact"][i, 1], p["deep_fm"][i, 1]
            total = total + node + on_int * 2 * d * MERGER_TOKENS * emb + on_fm * 2 * emb * d
            ew.append(d)
            ew2.append(p["dense_dim"][i] @ (dd * dd))
            et.append(t + MERGER_TOKENS * on_int)
        return total + 2 * (ew[-1] + et[-1] * emb)

    def discretise(self, logits: dict | None = None) -> dict:
        """The point of `logits` (default: this supernet's; or aggregated scores of the same shapes)."""
        lg = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in (logits or self.arch_logits()).items()}
        c, blocks = self.cfg, []
        for i in range(c.num_blocks):
            b = {}
            for key in ("dense_in", "sparse_in"):
                on = F.softmax(lg[key][i, :i + 1], -1)[:, 1]
                order = sorted(range(i + 1), key=lambda j: (-float(on[j]), j))
                keep = [j for j in order if on[j] > 0.5][:MAX_INPUTS] or order[:1]
                b[key.replace("_in", "_idx")] = sorted(keep)
            dn = [c.dense_nodes[o] for o in lg["dense_node"][i].argsort(descending=True, stable=True).tolist()]
            sn = c.sparse_nodes[int(lg["sparse_node"][i].argmax())]
            b["dense_node"] = dn[1] if dn[0] == "zeros" and sn == "zeros" else dn[0]
            b["sparse_node"] = sn
            b["dense_dim"] = c.dense_dims[int(lg["dense_dim"][i].argmax())]
            b["sparse_dim"] = c.sparse_dims[int(lg["sparse_dim"][i].argmax())]
            b["dense_sparse_interact"] = int(lg["interact"][i].argmax())
            b["deep_fm"] = int(lg["deep_fm"][i].argmax())
            lr = [int(lg[s][i, :i + 1].argmax()) if self.binary else 0 for s in ("left", "right")]
            b["dense_left_idx"], b["dense_right_idx"] = lr
            blocks.append(b)
        return NASRecPoint.model_validate({"dp_tokens": c.k, "blocks": blocks}).to_json_dict()


def _on(probs: torch.Tensor, slot: str) -> torch.Tensor:
    """A source gate's P(on) (its second entry); other slots as they are."""
    return probs[..., 1] if slot in ("dense_in", "sparse_in") else probs
