"""`inherit`: NASRec's one-shot evaluation (specs/search.md §2.4). Each candidate's subnet inherits a trained
supernet's weights (exactly its path: NASRecSubnet.inherit), only the final linear layer is fine-tuned for
`steps` steps (Adagrad, lr 0.04, linear warm-up over the first 10% of steps; NASRec's defaults), and the subnet
is scored on the validation split. The supernet itself is never changed."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ctrbench.data.loader import BatchLoader
from ctrbench.metrics import evaluate
from ctrbench.models.registry import build_model, model_tables
from ctrbench.search.base import Candidate, Evaluation
from ctrbench.search.evaluators.base import Evaluator
from ctrbench.search.registry import register_evaluator


@register_evaluator("inherit")
class OneShotEvaluator(Evaluator):
    def __init__(self, supernet, cache, *, metric: str = "auc", steps: int = 500, lr: float = 0.04,
                 warmup: float = 0.1, batch_size: int = 512, eval_batch_size: int = 16384, seed: int = 0):
        if steps < 0 or not 0 <= warmup <= 1 or lr <= 0:
            raise ValueError(f"one-shot evaluator: need steps >= 0, 0 <= warmup <= 1, lr > 0 (got {steps}, "
                             f"{warmup}, {lr})")
        self.supernet, self.cache, self.metric = supernet, cache, metric
        self.steps, self.lr, self.warmup, self.batch_size = steps, lr, warmup, batch_size
        self.eval_batch_size, self.seed = eval_batch_size, seed

    def subnet(self, c: Candidate):
        sub = build_model("nasrec_subnet", self.cache.spec, self.cache.vocab_sizes, c.params,
                          model_tables(self.cache), seed=self.seed)
        return sub.inherit(self.supernet)

    def finetune_head(self, sub) -> None:
        if self.steps == 0:
            return
        sub.eval()  # inherited statistics stay fixed; only the head learns
        head = sub.head_parameters()
        for p in sub.parameters():
            p.requires_grad_(False)
        for p in head:
            p.requires_grad_(True)
        opt = torch.optim.Adagrad(head, lr=self.lr, eps=1e-2)
        warm = max(1, round(self.warmup * self.steps))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
        loader, step, epoch = BatchLoader(self.cache, "train", self.batch_size, shuffle=True, seed=self.seed), 0, 0
        while step < self.steps:
            loader.set_epoch(epoch)
            for batch in loader:
                loss = F.binary_cross_entropy_with_logits(sub(batch), batch.label)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                if step == self.steps:
                    break
            epoch += 1

    def score(self, sub) -> dict:
        from ctrbench.train import predict

        out = predict(sub, self.cache, "valid", self.eval_batch_size, torch.device("cpu"))
        if not np.isfinite(out["preds"]).all():
            return {}
        return evaluate(out["labels"], out["preds"], out["group_ids"], train_ctr=self.cache.positive_rate("train"))

    def __call__(self, batch: list[Candidate]) -> list[Evaluation]:
        res = []
        for c in batch:
            sub = self.subnet(c)
            self.finetune_head(sub)
            metrics = self.score(sub)
            metrics.update(flops=sub.flops(), params=sum(p.numel() for p in sub.parameters()))
            value = metrics.get(self.metric)
            res.append(Evaluation(c, "ok" if value is not None else "nan", value, metrics=metrics))
        return res
