"""DNAS over the NASRec spaces (`nasrec_small`, `nasrec_full`, `nasrec_xlarge_zeros`): search.py's alternation
(weight steps on training batches, architecture steps on validation batches, annealed Gumbel temperature,
expected-FLOPs cost) on `nasrec_dnas_supernet` (ctrbench.models.nasrec.dnas), discretised to a point of the NASRec
space, which `retrain` (search.py) or the harness trains from scratch as `nasrec_subnet`.

The cost term's default F_ref is the expected FLOPs at the initial (uniform) distribution, so λ weighs the cost
against the loss at the scale where the search starts (ours: the NASRec spaces' costliest point is dominated by
widths no search would keep)."""
from __future__ import annotations

import torch

from ctrbench.models.registry import build_model, model_tables
from ctrbench.search.dnas.search import DNASConfig, DNASResult, DNASSearch
from ctrbench.search.spaces.nasrec import NASRecSpace
from ctrbench.train import TrainConfig, make_optimizers

SUPERNET_SPACES = {"nasrec_small": "small", "nasrec_full": "full", "nasrec_xlarge_zeros": "xlarge_zeros"}


def supernet_params(space: NASRecSpace) -> dict:
    """The nasrec supernet params holding every point of `space` (its node set, scale and block count)."""
    if not isinstance(space, NASRecSpace) or space.name not in SUPERNET_SPACES:
        raise ValueError(f"NASRec DNAS searches a NASRec space ({', '.join(SUPERNET_SPACES)}); got "
                         f"{getattr(space, 'name', space)!r}")
    return {"space": SUPERNET_SPACES[space.name], "scale": space.scale, "num_blocks": space.n}


class NASRecDNASSearch(DNASSearch):
    """DNASSearch on the NASRec DNAS supernet. `train` (optional) is the recipe whose optimizer settings the
    weight steps use (embedding_lr, embedding_l2, ...); the DNAS config's lr and batch size still apply."""

    def __init__(self, cache, space: NASRecSpace, cfg: DNASConfig, params: dict | None = None,
                 train: TrainConfig | dict | None = None):
        self.extra_params = dict(params or {})
        super().__init__(cache, space, cfg)
        if train is not None:
            base = train.model_dump() if isinstance(train, TrainConfig) else dict(train)
            self.train_cfg = TrainConfig(**{**base, "lr": cfg.lr, "batch_size": cfg.batch_size, "seed": cfg.seed,
                                            "optimizer": cfg.optimizer})
            self.weight_optimizers = make_optimizers(self.model, self.train_cfg)

    def build_supernet(self):
        cfg, cache = self.cfg, self.cache
        params = {**self.extra_params, **supernet_params(self.space), "hard": cfg.hard, "sample_per": cfg.sample_per,
                  "gumbel_seed": cfg.seed}
        return build_model("nasrec_dnas_supernet", cache.spec, cache.vocab_sizes, params, model_tables(cache),
                           seed=cfg.seed)

    def default_reference(self) -> float:
        with torch.no_grad():
            return float(self.model.expected_flops())

    def expected_flops(self) -> torch.Tensor:
        return self.model.expected_flops()

    def discretise(self, logits) -> dict:
        return self.space.validate(self.model.discretise(logits))


def run_nasrec_dnas(cache, space: NASRecSpace, cfg: DNASConfig | dict | None = None, *, params: dict | None = None,
                    train: TrainConfig | dict | None = None) -> DNASResult:
    """Search NASRec `space` on `cache`'s train (weights) and valid (architecture) splits; `params`: extra
    supernet params (e.g. numeric_norm), `train`: the weight steps' recipe."""
    cfg = cfg if isinstance(cfg, DNASConfig) else DNASConfig(**(cfg or {}))
    return NASRecDNASSearch(cache, space, cfg, params, train).run()
