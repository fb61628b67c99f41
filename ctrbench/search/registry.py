"""Searchers, search spaces and evaluators by name (suites name them; the harness finds them here).

Registration is by decorator alone: `@register_searcher(name)` on a Searcher class, `@register_space(name)` on a
factory `(**options) -> Space` (or `register_space(space)` for a ready, option-less instance), and
`@register_evaluator(kind)`, `@register_proxy(name)` on a zero-cost proxy class (ctrbench.search.proxies). Every
module under ctrbench.search.searchers / .spaces / .evaluators / .proxies is imported on first lookup, so a new file
registers itself without any list to edit.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any, Callable

from ctrbench.errors import UnknownNameError

SEARCHERS: dict[str, type] = {}
SPACES: dict[str, Callable[..., Any]] = {}
EVALUATORS: dict[str, type] = {}
PROXIES: dict[str, type] = {}
_PACKAGES = ("ctrbench.search.searchers", "ctrbench.search.spaces", "ctrbench.search.evaluators",
             "ctrbench.search.proxies")
_loaded = False


class SpaceOptionsError(ValueError):
    """Options a space factory does not take, or values it rejects; the message lists the valid options."""


def _register(table: dict, kind: str, name: str, obj) -> None:
    if name in table and table[name] is not obj and getattr(table[name], "__qualname__", None) != getattr(
            obj, "__qualname__", 0):
        raise ValueError(f"{kind} name {name!r} registered twice")
    table[name] = obj


def _decorator(table: dict, kind: str, name: str, attr: str):
    """A class decorator registering the class in `table` as `name` and setting `cls.<attr>` to the name."""

    def deco(cls):
        setattr(cls, attr, name)
        _register(table, kind, name, cls)
        return cls

    return deco


def register_searcher(name: str):
    return _decorator(SEARCHERS, "searcher", name, "name")


def register_evaluator(kind: str):
    return _decorator(EVALUATORS, "evaluator", kind, "kind")


def register_proxy(name: str):
    return _decorator(PROXIES, "proxy", name, "name")


def register_space(name_or_space):
    """`@register_space("name")` on a factory taking the space's options, or `register_space(space)`."""
    if isinstance(name_or_space, str):
        def deco(factory):
            _register(SPACES, "search space", name_or_space, factory)
            return factory

        return deco
    space = name_or_space

    def fixed():
        return space

    fixed.__qualname__ = f"fixed space {space.name}"
    SPACES[space.name] = fixed
    return space


def _load() -> None:
    global _loaded
    if _loaded:
        return
    for pkg_name in _PACKAGES:
        pkg = importlib.import_module(pkg_name)
        for m in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(f"{pkg_name}.{m.name}")
    _loaded = True


def _lookup(table: dict, kind: str, name: str):
    _load()
    try:
        return table[name]
    except KeyError:
        raise UnknownNameError(kind, name, table) from None


def get_searcher_class(name: str):
    return _lookup(SEARCHERS, "searcher", name)


def get_space(name: str, **options):
    """The space `name` built with `options` (e.g. scale=0.125 for a NASRec space)."""
    factory = _lookup(SPACES, "search space", name)
    valid = list(inspect.signature(factory).parameters)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise SpaceOptionsError(f"unknown option {unknown[0]!r} of search space {name!r}; valid: "
                                f"{', '.join(valid) or '(none)'}")
    return factory(**options)


def get_evaluator_class(kind: str):
    return _lookup(EVALUATORS, "evaluator", kind)


def get_proxy_class(name: str):
    return _lookup(PROXIES, "proxy", name)
