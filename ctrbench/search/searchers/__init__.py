"""Searchers; each module registers its searchers by decorator (ctrbench.search.registry)."""
