"""Searchers on top of the harness: each candidate a searcher proposes is evaluated as an ordinary run."""
