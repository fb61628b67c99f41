"""Zero-cost proxies (specs/search.md §3, §9.4): one file each, one interface, `score(model, batches) -> float`,
higher = predicted better (base.py). Registered by `@register_proxy(name)` (ctrbench.search.registry); build one
with `get_proxy(name, **options)`.

zico, sigeo (paper variant), sigeo_ref (the authors' RecSys code), fisher_rao, grad_norm, snip, synflow, naswot,
params, flops, loss (the current training loss, negated)."""
from __future__ import annotations


def get_proxy(name: str, **options):
    """The registered proxy `name` built with its options (e.g. get_proxy("sigeo", lambda2=0, lambda3=0))."""
    from ctrbench.search.proxies.base import ProxyError
    from ctrbench.search.registry import get_proxy_class

    cls = get_proxy_class(name)
    try:
        return cls(**options)
    except TypeError as exc:
        raise ProxyError(f"proxy {name!r}: {exc}") from None
