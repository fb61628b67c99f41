"""Searchers and search spaces by name (suites name them; the harness finds them here)."""
from __future__ import annotations

import importlib

from ctrbench.errors import UnknownNameError

SEARCHERS: dict[str, type] = {}
SPACES: dict[str, object] = {}
_MODULES = ("ctrbench.search.searchers.random_search", "ctrbench.search.spaces.dcnv2_space")


def register_searcher(name: str):
    def deco(cls):
        cls.name = name
        SEARCHERS[name] = cls
        return cls

    return deco


def register_space(space):
    SPACES[space.name] = space
    return space


def _load() -> None:
    for m in _MODULES:
        importlib.import_module(m)


def get_searcher_class(name: str):
    _load()
    try:
        return SEARCHERS[name]
    except KeyError:
        raise UnknownNameError("searcher", name, SEARCHERS) from None


def get_space(name: str):
    _load()
    try:
        return SPACES[name]
    except KeyError:
        raise UnknownNameError("search space", name, SPACES) from None
