"""A toy search for the searcher tests: the objective is how close a NASRec-Small point's encoding is to a
hidden target's (1 = the target), so it is cheap, deterministic and has one known optimum.
Run as a script (folder, [kill_at]) it drives a journalled evolution and SIGKILLs itself when asked to evaluate
candidate `kill_at`."""
from __future__ import annotations

import os
import signal
import sys

import numpy as np

from ctrbench.search.base import Evaluation, run_search
from ctrbench.search.journal import FileJournal
from ctrbench.search.registry import get_searcher_class, get_space

SPACE = {"space": "nasrec_small", "space_options": {"scale": 0.125}}


def toy_space():
    return get_space(SPACE["space"], **SPACE["space_options"])


def toy_evaluate(target_seed: int = 12345, kill_at: int | None = None):
    space = toy_space()
    target = space.encode(space.sample(np.random.default_rng(target_seed)))

    def evaluate(batch):
        out = []
        for c in batch:
            if c.index == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            value = 1.0 - float(np.abs(space.encode(c.point) - target).sum()) / len(target)
            out.append(Evaluation(c, "ok", value, metrics={"flops": space.flops(c.point, _SPEC)}))
        return out

    return evaluate


def evolution(seed: int = 0, budget: int = 60, **kw):
    cls = get_searcher_class("evolution")
    opts = {"population": 12, "sample_size": 4, "children": 4, **kw}
    return cls(cls.Params(**SPACE, budget=budget, seed=seed, **opts))


def random_search(seed: int = 0, budget: int = 60):
    cls = get_searcher_class("random")
    return cls(cls.Params(**SPACE, budget=budget, seed=seed))


class _Spec:  # the two numbers the NASRec FLOPs need: 13 numeric and 26 categorical fields (Criteo)
    numeric = tuple(range(13))
    features = tuple(range(39))


_SPEC = _Spec()

if __name__ == "__main__":
    folder, kill_at = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None
    run_search(evolution(), toy_evaluate(kill_at=kill_at), FileJournal(folder))
