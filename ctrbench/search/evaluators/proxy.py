"""`proxy`: score candidates with zero-cost proxies (ctrbench.search.proxies) instead of training them.

Each candidate's subnet either inherits a (warmed) supernet's weights for its path (`supernet`: sub-one-shot and
one-shot; a supernet at initialisation is zero-shot) or, without a supernet, is built fresh at initialisation
from `seed`. Every proxy scores it on the same `n_batches` training batches (drawn once, seeded), the gradient
proxies from one shared gradient pass. The evaluation's value is the `primary` proxy's score (higher = better,
so a searcher maximises it: give it a maximising metric such as `auc`); its metrics hold every proxy's score
(`proxy.<label>`), the seconds each took (`seconds.<label>`), the subnet's FLOPs and parameter count. A run
store journal (StoreJournal) keeps each evaluation as one row of kind `proxy`."""
from __future__ import annotations

import math
import time
from typing import Mapping

import torch

from ctrbench.data.loader import BatchLoader
from ctrbench.models.registry import build_model, model_tables
from ctrbench.search.base import Candidate, Evaluation
from ctrbench.search.evaluators.base import Evaluator
from ctrbench.search.proxies import get_proxy
from ctrbench.search.proxies.base import Proxy, ProxyError, gradient_stats
from ctrbench.search.registry import register_evaluator


def proxy_batches(cache, n_batches: int, batch_size: int, seed: int, split: str = "train") -> list:
    """The first `n_batches` batches of a seeded shuffle of `split`: the data every candidate is scored on."""
    if n_batches < 1 or batch_size < 1:
        raise ProxyError(f"need n_batches >= 1 and batch_size >= 1, got {n_batches}, {batch_size}")
    loader = BatchLoader(cache, split, batch_size, shuffle=True, seed=seed, drop_last=True)
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == n_batches:
            return batches
    raise ProxyError(f"the {split} split has {loader.rows} rows: fewer than {n_batches} batches of {batch_size}")


def build_proxies(proxies: Mapping[str, Proxy | str | dict] | list[str]) -> dict[str, Proxy]:
    """{label: proxy} from labels mapped to a proxy, a registered name, or {"name": ..., **options}; a list of
    names labels each by its name."""
    items = {p: p for p in proxies}.items() if isinstance(proxies, list) else proxies.items()
    out = {}
    for label, spec in items:
        if isinstance(spec, Proxy):
            out[label] = spec
        elif isinstance(spec, str):
            out[label] = get_proxy(spec)
        else:
            options = dict(spec)
            out[label] = get_proxy(options.pop("name"), **options)
    if not out:
        raise ProxyError("the proxy evaluator needs at least one proxy")
    return out


def score_all(model, proxies: dict[str, Proxy], batches: list) -> tuple[dict[str, float], dict[str, float]]:
    """({label: score}, {label: seconds}); the gradient proxies share one gradient pass, whose time is split
    evenly among them."""
    scores, seconds = {}, {}
    grad = [label for label, p in proxies.items() if p.needs_grad_stats]
    if grad:
        for label in grad:
            proxies[label].check_batches(batches)
        t0 = time.perf_counter()
        stats = gradient_stats(model, batches)
        share = (time.perf_counter() - t0) / len(grad)
        for label in grad:
            t1 = time.perf_counter()
            scores[label] = proxies[label].from_stats(stats)
            seconds[label] = share + time.perf_counter() - t1
    for label, p in proxies.items():
        if not p.needs_grad_stats:
            t1 = time.perf_counter()
            scores[label] = p.score(model, batches)
            seconds[label] = time.perf_counter() - t1
    return {label: scores[label] for label in proxies}, {label: seconds[label] for label in proxies}


@register_evaluator("proxy")
class ProxyEvaluator(Evaluator):
    def __init__(self, cache, proxies, *, supernet=None, primary: str | None = None, n_batches: int = 4,
                 batch_size: int = 512, seed: int = 0, model: str = "nasrec_subnet", model_params: dict | None = None):
        self.cache, self.supernet, self.seed, self.model = cache, supernet, seed, model
        self.proxies = build_proxies(proxies)
        self.primary = primary if primary is not None else next(iter(self.proxies))
        if self.primary not in self.proxies:
            raise ProxyError(f"primary proxy {self.primary!r} is not among {sorted(self.proxies)}")
        self.model_params = dict(model_params or {})
        self.batches = proxy_batches(cache, n_batches, batch_size, seed)

    def subnet(self, c: Candidate):
        """The candidate's model: inheriting the supernet's path, or fresh from `seed` without a supernet."""
        sub = build_model(self.model, self.cache.spec, self.cache.vocab_sizes, {**self.model_params, **c.params},
                          model_tables(self.cache), seed=self.seed)
        return sub.inherit(self.supernet) if self.supernet is not None else sub

    def evaluate_one(self, c: Candidate) -> Evaluation:
        t0 = time.perf_counter()
        with torch.random.fork_rng():
            torch.manual_seed(self.seed)
            sub = self.subnet(c)
            scores, seconds = score_all(sub, self.proxies, self.batches)
        metrics = {**{f"proxy.{k}": v for k, v in scores.items()}, **{f"seconds.{k}": v for k, v in seconds.items()}}
        metrics.update(flops=float(sub.flops()) if hasattr(sub, "flops") else None,
                       params=sum(p.numel() for p in sub.parameters()))
        value = scores[self.primary]
        ok = not math.isnan(value)
        return Evaluation(c, "ok" if ok else "nan", value if ok else None, metrics=metrics,
                          seconds=time.perf_counter() - t0)

    def __call__(self, batch: list[Candidate]) -> list[Evaluation]:
        return [self.evaluate_one(c) for c in batch]
