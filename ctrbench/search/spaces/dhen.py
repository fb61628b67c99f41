"""The DHEN-style space of Meta's ranking AutoML (specs/search.md §4.2; the paper's ranges are not public, so these
are ctrbench choices on our reading of a secondary source): 1-8 stacked layers, each with a module from {dot,
attention, linear, dcn, conv, none} and a width; the learning rate, the interaction init scale and layer norm.
A point is {"layers": [{"module", "width"}, ...], "lr", "init_scale", "layer_norm"}; it builds `dhen_stack`.

Every knob is discrete, so a point is fully given by its decisions (`decisions`, `from_decisions`): the number of
layers and a module and width for each of the 8 slots (slots past the number of layers are ignored), which is what
a policy with one categorical per decision samples."""
from __future__ import annotations

from typing import Any

import numpy as np

from ctrbench.models import dhen_stack  # noqa: F401  (registers the model this space builds)
from ctrbench.models.dhen_stack import MODULES
from ctrbench.search.registry import SpaceOptionsError, register_space
from ctrbench.search.spaces.space import Space, SpacePointError

MAX_LAYERS = 8
WIDTHS = (16, 32, 64, 128)
LRS = (3e-4, 1e-3, 3e-3)
INIT_SCALES = (0.5, 1.0, 2.0)
LAYER_NORMS = (False, True)
GLOBALS = {"lr": LRS, "init_scale": INIT_SCALES, "layer_norm": LAYER_NORMS}


def _one_hot(values: tuple, value) -> list[float]:
    return [1.0 if v == value else 0.0 for v in values]


class DHENSpace(Space):
    """The `dhen` space; `embedding_dim` and `hidden_units` (the head MLP) are fixed per space."""

    model = "dhen_stack"

    def __init__(self, embedding_dim: int = 16, hidden_units: tuple = (64,)):
        if embedding_dim < 1 or not hidden_units or min(hidden_units) < 1:
            raise SpaceOptionsError(f"search space 'dhen': embedding_dim {embedding_dim} and hidden_units "
                                    f"{list(hidden_units)} must be positive (and hidden_units non-empty)")
        self.name = "dhen"
        self.embedding_dim, self.hidden_units = int(embedding_dim), [int(h) for h in hidden_units]

    # --- decisions: one categorical each ---------------------------------------------------------------------
    def decisions(self) -> dict[str, tuple]:
        """Every decision and its values, in a fixed order (slot i's module and width, then the globals)."""
        out: dict[str, tuple] = {"num_layers": tuple(range(1, MAX_LAYERS + 1))}
        for i in range(MAX_LAYERS):
            out[f"layers[{i}].module"] = MODULES
            out[f"layers[{i}].width"] = WIDTHS
        return {**out, **GLOBALS}

    def from_decisions(self, chosen: dict[str, Any]) -> dict:
        """The point of a full set of decisions (slots past num_layers dropped)."""
        n = chosen["num_layers"]
        layers = [{"module": chosen[f"layers[{i}].module"], "width": chosen[f"layers[{i}].width"]} for i in range(n)]
        return self.validate({"layers": layers, **{k: chosen[k] for k in GLOBALS}})

    def knobs(self, point: dict) -> dict[str, Any]:
        out: dict[str, Any] = {"num_layers": len(point["layers"])}
        for i, layer in enumerate(point["layers"]):
            out[f"layers[{i}].module"], out[f"layers[{i}].width"] = layer["module"], layer["width"]
        return {**out, **{k: point[k] for k in GLOBALS}}

    def choices(self) -> dict[str, tuple]:
        return self.decisions()

    # --- the Space API ---------------------------------------------------------------------------------------
    def validate(self, point: Any) -> dict:
        if not isinstance(point, dict) or set(point) != {"layers", *GLOBALS}:
            got = sorted(point) if isinstance(point, dict) else type(point).__name__
            raise SpacePointError(self.name, "top level", f"keys {got}; expected {sorted(['layers', *GLOBALS])}")
        layers = point["layers"]
        if not isinstance(layers, list) or not 1 <= len(layers) <= MAX_LAYERS:
            raise SpacePointError(self.name, "layers", f"a list of 1..{MAX_LAYERS} layers, got {layers!r}")
        for i, layer in enumerate(layers):
            if not isinstance(layer, dict) or set(layer) != {"module", "width"}:
                raise SpacePointError(self.name, f"layers[{i}]", f"a layer is {{'module', 'width'}}, got {layer!r}")
            for key, values in (("module", MODULES), ("width", WIDTHS)):
                if layer[key] not in values:
                    raise SpacePointError(self.name, f"layers[{i}].{key}", f"{layer[key]!r} not in {list(values)}")
        for key, values in GLOBALS.items():
            if point[key] not in values or isinstance(point[key], bool) != isinstance(values[0], bool):
                raise SpacePointError(self.name, key, f"{point[key]!r} not in {list(values)}")
        return {"layers": [{"module": la["module"], "width": int(la["width"])} for la in layers],
                "lr": float(point["lr"]), "init_scale": float(point["init_scale"]),
                "layer_norm": bool(point["layer_norm"])}

    def canonical(self, point: dict) -> dict:
        """"none" layers are the identity (no weights, no norm: dhen_stack.StackLayer), so they and their widths do
        not count; a stack of only "none" layers has no interaction weights, so neither do init_scale and
        layer_norm. (In suites/automl_100, 29 of 900 trials were such duplicates, 13 in one TPE search.)"""
        p = self.validate(point)
        layers = [la for la in p["layers"] if la["module"] != "none"]
        return {**p, "layers": layers} if layers else {"layers": [], "lr": p["lr"]}

    def sample(self, rng: np.random.Generator) -> dict:
        return self.from_decisions({k: v[int(rng.integers(len(v)))] for k, v in self.decisions().items()})

    def _with(self, point: dict, knob: str, value) -> dict:
        """`point` with one knob set (num_layers grows with copies of the last layer, or drops layers)."""
        out = {"layers": [dict(la) for la in point["layers"]], **{k: point[k] for k in GLOBALS}}
        if knob == "num_layers":
            out["layers"] = (out["layers"] + [dict(out["layers"][-1])] * MAX_LAYERS)[:value]
        elif knob in GLOBALS:
            out[knob] = value
        else:
            slot, key = knob[len("layers["):].split("].")
            out["layers"][int(slot)][key] = value
        return out

    def mutate(self, point: dict, rng: np.random.Generator) -> dict:
        knobs = self.knobs(point)
        knob = list(knobs)[int(rng.integers(len(knobs)))]
        values = self.decisions()[knob]
        return self.validate(self._with(point, knob, values[int(rng.integers(len(values)))]))

    def neighbours(self, point: dict) -> list[dict]:
        values = self.decisions()
        return [self._with(point, k, v) for k, current in self.knobs(point).items() for v in values[k] if v != current]

    @property
    def encoding_size(self) -> int:
        return sum(len(v) for v in self.decisions().values())

    def encode(self, point: dict) -> np.ndarray:
        """One-hot per decision; an unused slot is all zeros (so the encoding is the point, nothing more)."""
        point = self.validate(point)
        knobs = self.knobs(point)
        vec = [x for k, values in self.decisions().items()
               for x in (_one_hot(values, knobs[k]) if k in knobs else [0.0] * len(values))]
        return np.array(vec, dtype=np.float64)

    def decode(self, vector) -> dict:
        vector = np.asarray(vector, dtype=np.float64)
        if vector.shape != (self.encoding_size,):
            raise SpacePointError(self.name, "encoding", f"shape {vector.shape}; expected ({self.encoding_size},)")
        chosen, at = {}, 0
        for k, values in self.decisions().items():
            chosen[k] = values[int(np.argmax(vector[at:at + len(values)]))]
            at += len(values)
        return self.from_decisions(chosen)

    def flops(self, point: dict, spec) -> int:
        """Matmul/conv FLOPs per example (2 per multiply-add): each layer's module and the head MLP; lookups,
        element-wise ops, norms and biases not counted (as the other spaces' counts)."""
        point = self.validate(point)
        m, d = len(spec.features), self.embedding_dim
        big_d, total = m * d, 0
        for layer in point["layers"]:
            w = layer["width"]
            total += {"dot": 2 * m * m * d + 2 * (m * (m - 1) // 2) * big_d,
                      "attention": 2 * m * d * 3 * w + 4 * m * m * w + (2 * m * d * w if d != w else 0) + 2 * m * w * d,
                      "linear": 4 * big_d * w, "dcn": 4 * big_d * w, "conv": 2 * m * d * w * 3 + 2 * m * w * d,
                      "none": 0}[layer["module"]]
        width = big_d
        for units in self.hidden_units:
            total, width = total + 2 * width * units, units
        return total + 2 * width

    def candidate(self, point: dict) -> tuple[dict, dict]:
        point = self.validate(point)
        params = {"embedding_dim": self.embedding_dim, "hidden_units": list(self.hidden_units),
                  "layers": [la["module"] for la in point["layers"]], "widths": [la["width"] for la in point["layers"]],
                  "layer_norm": point["layer_norm"], "init_scale": point["init_scale"]}
        return params, {"lr": point["lr"]}


@register_space("dhen")
def dhen_space(embedding_dim: int = 16, hidden_units: tuple = (64,)) -> DHENSpace:
    return DHENSpace(embedding_dim, tuple(hidden_units))
