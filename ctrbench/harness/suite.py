"""Suites: a YAML file of entries × datasets × seeds (with defaults, overrides and grids), validated strictly.

Every mistake is a ConfigError naming the YAML path (e.g. `entries[2].params.cross_layers`), the line,
and the valid choices: unknown keys list the allowed keys, unknown models/datasets/searchers list the
registered names, unknown model params list the model's Params fields. Model params are validated by
the model's own `Params`, train settings by `TrainConfig`, searcher options by the searcher's `Params`.

    name: quick
    defaults: {train: {max_epochs: 3}, dataset: {source: synthetic, rows: 40000}}
    datasets: [{name: criteo_x1}, {name: amazonelectronics_x1, rows: 30000, twin: {shares: {first: 1.0}}}]
    seeds: [0, 1]
    entries:
      - {name: dcnv2, model: dcnv2, params: {num_cross_layers: 2}, train: {lr: 0.001}}
      - {name: dcnv2_grid, model: dcnv2, grid: {params.num_cross_layers: [1, 3]}}
      - {name: rs, kind: searcher, searcher: random, search: {space: dcnv2, budget: 4}, datasets: [criteo_x1]}
    overrides:
      - {datasets: [amazonelectronics_x1], train: {batch_size: 512}}
    measure: {warmup: 3, steps: 10}      # cost measurement after training (a system knob: part of run identity)
                                         # (precision: 0.03 times on until the median is known within ±3%)
    reference:                           # optional published numbers, printed beside real-data runs
      source: "Paper, Table 2"
      values: {dcnv2: {criteo_x1: {auc: 0.8142, logloss: 0.4380}}}   # entry -> dataset -> metric -> value
    checks:                              # optional claims the report tests on the stored runs (harness/checks.py)
      - {name: dcnv2_beats_grid, entry: dcnv2, rivals: [dcnv2_grid], datasets: [criteo_x1], metric: auc}

`twin:` (in defaults.dataset or a dataset, whose keys override the defaults' one by one; synthetic only) sets
the twin generator's card_ratio, kappa, auc_margin and shares (signal part -> variance share, replacing the
twin's default shares; the parts are synthetic.KNOBS[name].shares' keys): part of the run identity.

`system:` (in defaults, an override or an entry; `grid: {system.world_size: [1, 2]}` too) sets how a run executes:
threads, batch size, backends, embedding gradients, dtype, DDP world size, prefetch (ctrbench.cubicml.system).
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, ValidationError, field_validator

from ctrbench.errors import ConfigError, ParamError, UnknownNameError
from ctrbench.runs.records import RunSpec, cache_identity, canonical_json, dataset_identity

NAME_PATTERN = r"^[A-Za-z0-9_.\-\[\]=,]+$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TwinOptions(Strict):
    """Generator options of a synthetic twin (ctrbench.data.synthetic.generate_twin; unset = its default): an
    easier or harder variant of the twin, part of the run identity and of the twin's cache folder."""

    card_ratio: Optional[float] = Field(None, gt=0, allow_inf_nan=False)  # vocabularies approach card_ratio*rows
    kappa: Optional[float] = Field(None, ge=0, allow_inf_nan=False)  # shrinkage of rare ids' planted effects
    auc_margin: Optional[float] = Field(None, allow_inf_nan=False)  # oracle AUC - the best published AUC
    shares: Optional[dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]]] = None  # part -> variance share

    @field_validator("shares")
    @classmethod
    def _one_positive(cls, v):
        if v is not None and not any(x > 0 for x in v.values()):
            raise ValueError("at least one share must be > 0")
        return v


class DatasetDefaults(Strict):
    source: Literal["synthetic", "real"] = "synthetic"
    rows: Optional[PositiveInt] = None  # twin size (synthetic) or row cap (None = the dataset's default)
    data_seed: int = 0  # the twin generator's seed (the same data for every model seed)
    twin: Optional[TwinOptions] = None  # generator options of every synthetic dataset's twin


class DatasetEntry(Strict):
    name: str
    source: Optional[Literal["synthetic", "real"]] = None  # None = defaults.dataset.source
    rows: Optional[PositiveInt] = None
    data_seed: Optional[int] = None
    twin: Optional[TwinOptions] = None  # its keys override defaults.dataset.twin's one by one


class Defaults(Strict):
    train: dict[str, Any] = Field(default_factory=dict)  # TrainConfig fields for every run
    system: dict[str, Any] = Field(default_factory=dict)  # system knobs (ctrbench.cubicml.system.SystemKnobs)
    dataset: DatasetDefaults = Field(default_factory=DatasetDefaults)


class Entry(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    kind: Literal["model", "searcher"] = "model"
    model: Optional[str] = None  # kind model: a registered model
    searcher: Optional[str] = None  # kind searcher: a registered searcher
    search: dict[str, Any] = Field(default_factory=dict)  # kind searcher: the searcher's Params
    params: dict[str, Any] = Field(default_factory=dict)  # the model's Params (searcher: fixed for all candidates)
    train: dict[str, Any] = Field(default_factory=dict)  # TrainConfig overrides
    system: dict[str, Any] = Field(default_factory=dict)  # system knobs (ctrbench.cubicml.system.SystemKnobs)
    datasets: Optional[list[str]] = None  # a subset of the suite's datasets (None = all)
    seeds: Optional[list[NonNegativeInt]] = None  # None = the suite's seeds
    grid: dict[str, list[Any]] = Field(default_factory=dict)  # "params.X" / "train.Y" / "system.Z" -> values


class Override(Strict):
    """Extra params/train settings for the runs matching every given filter (later overrides win)."""

    datasets: Optional[list[str]] = None
    entries: Optional[list[str]] = None
    models: Optional[list[str]] = None
    params: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    system: dict[str, Any] = Field(default_factory=dict)


class MeasureSettings(Strict):
    """How each run's cost is measured after training (ctrbench.measure.measure_cost)."""

    warmup: NonNegativeInt = 3  # untimed steps
    steps: PositiveInt = 10  # timed steps (median and p90 over these); with `precision`, the least timed steps
    precision: Optional[float] = Field(None, gt=0, lt=1)  # time on until the median's 95% CI is within ± this share
    max_steps: Optional[PositiveInt] = None  # with `precision`: the cap on timed steps (None = 20 x steps)


REFERENCE_METRICS = ("auc", "gauc", "logloss", "ne", "params")


class ReferenceBlock(Strict):
    """Published numbers (e.g. a paper's table) that reports print beside the suite's real-data runs."""

    source: str = ""  # where the numbers come from
    values: dict[str, dict[str, dict[Literal["auc", "gauc", "logloss", "ne", "params"], float]]] = Field(
        default_factory=dict)  # entry name -> dataset -> metric -> value


class CheckSpec(Strict):
    """A claim about the stored runs: on each dataset, `entry` beats the best of `rivals` on `metric` by more
    than the spread between seeds (ctrbench/harness/checks.py evaluates it; the report prints the verdict)."""

    name: str = Field(pattern=NAME_PATTERN)
    entry: str
    rivals: list[str] = Field(min_length=1)  # entry names (a grid entry's name covers all its points)
    datasets: Optional[list[str]] = None  # None = every dataset of the suite
    metric: Literal["auc", "gauc", "logloss"] = "auc"


class SuiteFile(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    defaults: Defaults = Field(default_factory=Defaults)
    datasets: list[DatasetEntry] = Field(min_length=1)
    seeds: list[NonNegativeInt] = Field(default_factory=lambda: [0], min_length=1)
    entries: list[Entry] = Field(min_length=1)
    overrides: list[Override] = Field(default_factory=list)
    measure: MeasureSettings = Field(default_factory=MeasureSettings)
    reference: ReferenceBlock = Field(default_factory=ReferenceBlock)
    checks: list[CheckSpec] = Field(default_factory=list)


# --- registries (the real ones by default; tests may pass their own) -------------------------------
@dataclass
class Registries:
    """How the suite finds models, the train config, datasets and searchers (by name)."""

    model_class: Callable[[str], Any]
    train_config: Callable[[], type]
    dataset_spec: Callable[[str], Any]
    searcher_class: Callable[[str], Any]

    @classmethod
    def default(cls) -> "Registries":
        def model_class(name):
            from ctrbench.models.registry import get_model_class

            return get_model_class(name)

        def train_config():
            from ctrbench.train import TrainConfig

            return TrainConfig

        def dataset_spec(name):
            from ctrbench.data.registry import get_spec

            return get_spec(name)

        def searcher_class(name):
            from ctrbench.search.registry import get_searcher_class

            return get_searcher_class(name)

        return cls(model_class, train_config, dataset_spec, searcher_class)


# --- YAML with line numbers -------------------------------------------------------------------------
def fmt_path(loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "." in str(part) or " " in str(part):
            out += f"[{str(part)!r}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _line_map(node, loc: tuple, out: dict, file: str) -> None:
    """Path -> 1-based line of every node (keys map to their key's line); duplicate keys are errors."""
    out.setdefault(fmt_path(loc), node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for k, v in node.value:
            key = k.value
            if key in seen:
                raise ConfigError(f"duplicate key {key!r}", path=fmt_path(loc + (key,)), file=f"{file}:{k.start_mark.line + 1}")
            seen.add(key)
            out[fmt_path(loc + (key,))] = k.start_mark.line + 1
            _line_map(v, loc + (key,), out, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_map(v, loc + (i,), out, file)


class SourceMap:
    """Where each YAML path sits in the file, for error messages."""

    def __init__(self, file: str, lines: dict[str, int]):
        self.file, self.lines = file, lines

    def where(self, loc) -> str:
        """"file:line" of the deepest existing prefix of `loc`."""
        loc = tuple(loc)
        while loc:
            line = self.lines.get(fmt_path(loc))
            if line is not None:
                return f"{self.file}:{line}"
            loc = loc[:-1]
        return self.file

    def error(self, message: str, loc) -> ConfigError:
        err = ConfigError(message, path=fmt_path(loc), file=self.where(loc))
        err.loc = tuple(loc)
        return err


def _unwrap(t):
    """Optional[X] -> X, list[X] -> X (the type an item of the field has)."""
    while True:
        args = [a for a in typing.get_args(t) if a is not type(None)]
        origin = typing.get_origin(t)
        if origin in (typing.Union, types.UnionType, list) and args:
            t = args[0]
        else:
            return t


def _fields_at(root: type[BaseModel], loc: tuple) -> list[str] | None:
    """Field names of the pydantic model found by walking `loc` from `root` (for 'valid keys' hints)."""
    cls: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        cls = _unwrap(cls)
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or part not in cls.model_fields:
            return None
        cls = cls.model_fields[part].annotation
    cls = _unwrap(cls)
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return list(cls.model_fields)
    return None


def pydantic_error(exc: ValidationError, model: type[BaseModel], src: SourceMap, prefix: tuple = (),
                   origin: Callable[[tuple], tuple] | None = None) -> ConfigError:
    """Turn a pydantic error into a ConfigError at the YAML path (first error; the rest are listed)."""
    msgs, first = [], None
    for e in exc.errors():
        loc = tuple(e["loc"])
        yaml_loc = origin(loc) if origin else prefix + loc
        if e["type"] == "extra_forbidden":
            valid = _fields_at(model, loc[:-1]) or []
            msg = f"unknown key {loc[-1]!r}; valid keys: {', '.join(valid)}"
        elif e["type"] == "missing":
            msg = f"missing required key {loc[-1]!r}"
        else:
            msg = f"{e['msg']} (got {e.get('input')!r})"
        if first is None:
            first = (msg, yaml_loc)
        msgs.append(f"{fmt_path(yaml_loc)}: {msg}")
    msg, loc = first
    if len(msgs) > 1:
        msg += "; also: " + "; ".join(msgs[1:])
    return src.error(msg, loc)


def load_yaml(path: str | os.PathLike) -> tuple[Any, SourceMap]:
    """Parse a YAML file into plain data plus its source map; syntax errors are ConfigErrors with the line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read suite file: {exc.strerror}", file=str(path)) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"invalid YAML: {getattr(exc, 'problem', None) or exc}", file=where) from None
    lines: dict[str, int] = {}
    if node is not None:
        _line_map(node, (), lines, str(path))
    return data, SourceMap(str(path), lines)


# --- resolved suite ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetRef:
    name: str
    source: str
    rows: int | None
    data_seed: int
    twin: dict = field(default_factory=dict, hash=False)  # the twin's generator options ({} = the defaults)
    cache: dict = field(default_factory=dict, hash=False)  # source real: the prepared cache's identity

    def identity(self) -> dict:
        """The dataset part of a search's identity (records.dataset_identity)."""
        return dataset_identity(self.name, self.source, self.rows, self.data_seed, self.twin, self.cache)


@dataclass(frozen=True)
class SearchSpec:
    """One search (a searcher entry on one dataset with one seed); its candidates become RunSpecs."""

    suite: str
    entry: str
    searcher: str
    options: dict  # the searcher's resolved Params
    model: str
    params: dict  # fixed model params under every candidate's
    train: dict  # train settings (merged layers) under every candidate's
    dataset: DatasetRef
    seed: int
    system: dict = field(default_factory=dict)
    loc: tuple = ()  # YAML path of the entry, for errors

    def identity(self) -> dict:
        return {"entry": self.entry, "searcher": self.searcher, "options": self.options, "model": self.model,
                "params": self.params, "train": self.train, "dataset": self.dataset.identity(), "seed": self.seed,
                "system": self.system}

    @property
    def search_id(self) -> str:
        return "s" + hashlib.sha256(canonical_json(self.identity()).encode()).hexdigest()[:15]

    @property
    def label(self) -> str:
        return f"{self.dataset.name}/{self.entry}/seed{self.seed}"


def is_entry_or_point(run_entry: str, name: str) -> bool:
    """Whether a run's entry name is the suite entry `name` or one of its grid points ('name[...]')."""
    return run_entry == name or run_entry.startswith(name + "[")


@dataclass
class Suite:
    """A validated suite: its model runs and searches, ready for the runner."""

    name: str
    path: str
    description: str
    runs: list[RunSpec]
    searches: list[SearchSpec]
    datasets: list[DatasetRef]
    seeds: list[int]
    entry_names: list[str] = field(default_factory=list)
    registries: Registries | None = None
    reference: ReferenceBlock = field(default_factory=ReferenceBlock)
    checks: list[CheckSpec] = field(default_factory=list)

    def only(self, names: list[str]) -> "Suite":
        """The same suite restricted to the named entries (a grid entry's name selects all its points)."""
        unknown = [n for n in names if not any(is_entry_or_point(e, n) for e in self.entry_names)]
        if unknown:
            raise ConfigError(f"unknown entry {unknown[0]!r}; valid: {', '.join(self.entry_names)}", file=self.path)

        def keep(e):
            return any(is_entry_or_point(e, n) for n in names)

        return dataclasses.replace(self, runs=[r for r in self.runs if keep(r.entry)],
                                   searches=[s for s in self.searches if keep(s.entry)])

    def with_caches(self, data_root=None) -> "Suite":
        """The suite with each real dataset's prepared cache (records.cache_identity) in its runs' and searches'
        identity: results on data prepared from other files, or with other bad-row handling, are not resumed
        as finished. An unprepared real dataset is a DataError that says how to prepare it."""
        if all(d.source != "real" for d in self.datasets):
            return self
        from ctrbench.data.api import open_dataset

        caches = {d.name: cache_identity(open_dataset(d.name, "real", data_root=data_root).manifest)
                  for d in self.datasets if d.source == "real"}
        datasets = [dataclasses.replace(d, cache=caches.get(d.name, {})) for d in self.datasets]
        by_name = {d.name: d for d in datasets}
        return dataclasses.replace(
            self, datasets=datasets,
            runs=[dataclasses.replace(r, cache=caches.get(r.dataset, {})) if r.source == "real" else r
                  for r in self.runs],
            searches=[dataclasses.replace(s, dataset=by_name[s.dataset.name]) for s in self.searches])

    @property
    def planned_runs(self) -> int:
        """Runs the suite will execute or skip (model runs + each training search's budget where it declares one)."""
        return len(self.runs) + sum(int(s.options.get("budget", 0)) for s in self.searches
                                    if s.options.get("evaluation", "train") == "train")

    def candidate_spec(self, search: SearchSpec, index: int, params: dict, train: dict) -> RunSpec:
        """The RunSpec of a searcher's candidate (validated like any entry; a bad space is a ConfigError)."""
        reg = self.registries or Registries.default()
        src = SourceMap(self.path, {})
        where = search.loc + (f"candidate {index}",)
        model_cls = reg.model_class(search.model)
        full_params = _validate_params(model_cls, search.model, {**search.params, **params}, src,
                                       lambda k: where + ("params", k), reg.dataset_spec(search.dataset.name))
        full_train = _validate_train(reg.train_config(), {**search.train, **train, "seed": search.seed}, src,
                                     lambda k: where + ("train", k))
        return RunSpec(
            suite=self.name, entry=search.entry, model=search.model, params=full_params, train=full_train,
            dataset=search.dataset.name, source=search.dataset.source, rows=search.dataset.rows,
            data_seed=search.dataset.data_seed, seed=search.seed, system=search.system, kind="candidate",
            search_id=search.search_id,
            candidate_index=index, twin=search.dataset.twin, cache=search.dataset.cache,
        )


def _validate_params(model_cls, model_name: str, params: dict, src: SourceMap, key_loc: Callable[[str], tuple],
                     dataset_spec=None) -> dict:
    """The model's resolved params; each bad value (alone, or on `dataset_spec`: Params.check_dataset) is a
    ConfigError at its YAML path, or at the entry's model where the model does not fit the dataset at all."""
    Params = model_cls.Params
    try:
        validated = Params(**params)
        if dataset_spec is not None:
            validated.check_dataset(dataset_spec)
        return validated.model_dump(mode="json")
    except ParamError as exc:
        loc = key_loc(exc.param) if exc.param else key_loc("")[:-2] + ("model",)
        raise src.error(f"model {model_name!r} on {dataset_spec.name}: {exc}", loc) from None
    except ValidationError as exc:
        e = exc.errors()[0]
        key = e["loc"][0] if e["loc"] else None
        loc = key_loc(key) if key is not None else key_loc("")[:-1]
        if e["type"] == "extra_forbidden":
            raise src.error(f"unknown param {key!r} of model {model_name!r}; valid: {', '.join(Params.model_fields)}", loc) from None
        raise pydantic_error(exc, Params, src, origin=lambda l: key_loc(l[0]) + tuple(l[1:]) if l else loc) from None
    except (TypeError, ValueError) as exc:
        raise src.error(f"invalid params of model {model_name!r}: {exc}", key_loc("")[:-1]) from None


def _validate_train(TrainConfig, train: dict, src: SourceMap, key_loc: Callable[[str], tuple]) -> dict:
    try:
        return TrainConfig(**train).model_dump(mode="json")
    except ValidationError as exc:
        e = exc.errors()[0]
        key = e["loc"][0] if e["loc"] else ""
        if e["type"] == "extra_forbidden":
            raise src.error(f"unknown train setting {key!r}; valid: {', '.join(TrainConfig.model_fields)}", key_loc(key)) from None
        raise pydantic_error(exc, TrainConfig, src, origin=lambda l: key_loc(l[0]) + tuple(l[1:]) if l else key_loc(key)) from None


def _resolve_system(knobs: dict, train: dict, params: dict, src: SourceMap,
                    locs: dict[str, Callable[[str], tuple]]) -> tuple[dict, dict, dict]:
    """ctrbench.cubicml.system.resolve_system with each bad or conflicting knob a ConfigError at its YAML path."""
    from ctrbench.cubicml.system import KnobError, SystemKnobs, resolve_system

    if not knobs:
        return train, params, {}
    try:
        validated = SystemKnobs(**knobs)
    except ValidationError as exc:
        e = exc.errors()[0]
        key = e["loc"][0] if e["loc"] else ""
        if e["type"] == "extra_forbidden":
            raise src.error(f"unknown system knob {key!r}; valid: {', '.join(SystemKnobs.model_fields)}",
                            locs["system"](key)) from None
        raise pydantic_error(exc, SystemKnobs, src, origin=lambda l: locs["system"](l[0]) + tuple(l[1:])) from None
    try:
        return resolve_system(validated, train, params)
    except KnobError as exc:
        raise src.error(str(exc), locs[exc.section](exc.key)) from None


def _layers_loc(layers: list[tuple[tuple, dict]]) -> Callable[[str], tuple]:
    """For a key, the YAML path of the last layer that set it (entry beats overrides beats defaults)."""
    def loc(key: str) -> tuple:
        for base, d in reversed(layers):
            if key in d:
                return base + (key,)
        return layers[-1][0] + (key,)

    return loc


def _grid_points(entry: Entry, i: int, src: SourceMap) -> list[tuple[str, dict, dict, dict]]:
    """(name, params, train, system) per point of the entry's grid (one point when there is no grid)."""
    if not entry.grid:
        return [(entry.name, {}, {}, {})]
    keys = list(entry.grid)
    for k in keys:
        section, _, knob = k.partition(".")
        if section not in ("params", "train", "system") or not knob:
            raise src.error(f"grid key {k!r} must be 'params.<name>', 'train.<name>' or 'system.<name>'",
                            ("entries", i, "grid", k))
        if not entry.grid[k]:
            raise src.error(f"grid {k!r} has no values", ("entries", i, "grid", k))
    out = []
    for values in itertools.product(*(entry.grid[k] for k in keys)):
        sections: dict[str, dict] = {"params": {}, "train": {}, "system": {}}
        for k, v in zip(keys, values):
            section, _, knob = k.partition(".")
            sections[section][knob] = v
        tag = ",".join(f"{k.partition('.')[2]}={canonical_json(v)}" for k, v in zip(keys, values))
        out.append((f"{entry.name}[{tag}]", sections["params"], sections["train"], sections["system"]))
    return out


def load_suite(path: str | os.PathLike, registries: Registries | None = None,
               seeds: list[int] | None = None) -> Suite:
    """Read, validate and expand a suite file; every problem is a ConfigError with path, line and choices.
    `seeds` (e.g. `ctrbench run --seeds`) replaces the suite's and its entries' seeds."""
    reg = registries or Registries.default()
    data, src = load_yaml(path)
    if not isinstance(data, dict):
        raise src.error("a suite file must be a mapping with name, datasets, entries", ())
    try:
        sf = SuiteFile.model_validate(data)
    except ValidationError as exc:
        raise pydantic_error(exc, SuiteFile, src) from None
    if seeds is not None:
        sf.seeds = list(seeds)
        for e in sf.entries:
            e.seeds = None

    # datasets
    dflt = sf.defaults.dataset
    datasets: list[DatasetRef] = []
    for j, d in enumerate(sf.datasets):
        try:
            reg.dataset_spec(d.name)
        except UnknownNameError as exc:
            raise src.error(f"unknown dataset {d.name!r}; valid: {', '.join(exc.valid)}", ("datasets", j, "name")) from None
        if any(x.name == d.name for x in datasets):
            raise src.error(f"dataset {d.name!r} listed twice", ("datasets", j, "name"))
        source = d.source or dflt.source
        datasets.append(DatasetRef(d.name, source, d.rows if d.rows is not None else dflt.rows,
                                   d.data_seed if d.data_seed is not None else dflt.data_seed,
                                   _twin_options(reg, dflt, d, j, source, src)))
    if dflt.twin is not None and all(d.source != "synthetic" for d in datasets):
        raise src.error("twin options apply to source synthetic only, and no dataset here is synthetic",
                        ("defaults", "dataset", "twin"))
    by_name = {d.name: d for d in datasets}
    entry_names = [e.name for e in sf.entries]
    for i, e in enumerate(sf.entries):
        if entry_names.count(e.name) > 1:
            raise src.error(f"entry name {e.name!r} used twice", ("entries", i, "name"))
    for j, o in enumerate(sf.overrides):
        for key, valid in (("datasets", list(by_name)), ("entries", entry_names)):
            for k, v in enumerate(getattr(o, key) or []):
                if v not in valid:
                    raise src.error(f"unknown {key[:-1]} {v!r}; valid: {', '.join(valid)}", ("overrides", j, key, k))

    TrainConfig = reg.train_config()
    system = {"measure_warmup": sf.measure.warmup, "measure_steps": sf.measure.steps}
    if sf.measure.precision is not None:  # only when set: suites without it keep their run identities
        system |= {"measure_precision": sf.measure.precision,
                   "measure_max_steps": sf.measure.max_steps or 20 * sf.measure.steps}
    runs: list[RunSpec] = []
    searches: list[SearchSpec] = []
    expanded_names: list[str] = []
    for i, e in enumerate(sf.entries):
        eloc = ("entries", i)
        # which model and (for searchers) which searcher
        searcher, search_system = None, system
        if e.kind == "model":
            if e.model is None:
                raise src.error("a model entry needs 'model' (a registered model name)", eloc + ("model",))
            for bad in ("searcher", "search"):
                if getattr(e, bad):
                    raise src.error(f"{bad!r} is only for kind: searcher", eloc + (bad,))
            model_name = e.model
        else:
            if e.searcher is None:
                raise src.error("a searcher entry needs 'searcher' (a registered searcher name)", eloc + ("searcher",))
            if e.grid:
                raise src.error("a searcher entry cannot have a grid (the searcher chooses the values)", eloc + ("grid",))
            try:
                scls = reg.searcher_class(e.searcher)
            except UnknownNameError as exc:
                raise src.error(f"unknown searcher {e.searcher!r}; valid: {', '.join(exc.valid)}", eloc + ("searcher",)) from None
            try:
                options = scls.Params(**e.search)
            except ValidationError as exc:
                raise pydantic_error(exc, scls.Params, src, prefix=eloc + ("search",)) from None
            try:
                searcher = scls(options)
            except UnknownNameError as exc:
                key = "space" if "space" in e.search else None
                raise src.error(str(exc), eloc + ("search",) + ((key,) if key else ())) from None
            model_name = searcher.model
            if options.evaluation != "train":
                identity = _checked_evaluator(searcher, src, eloc).identity
                search_system = {**system, "evaluator": identity} if identity else system
            if e.model is not None and e.model != model_name:
                raise src.error(f"searcher {e.searcher!r} searches model {model_name!r}, not {e.model!r}", eloc + ("model",))
        try:
            model_cls = reg.model_class(model_name)
        except UnknownNameError as exc:
            raise src.error(f"unknown model {model_name!r}; valid: {', '.join(exc.valid)}", eloc + ("model",)) from None

        ds_names = e.datasets if e.datasets is not None else list(by_name)
        for k, n in enumerate(ds_names):
            if n not in by_name:
                raise src.error(f"dataset {n!r} is not in this suite's datasets; valid: {', '.join(by_name)}",
                                eloc + ("datasets", k))
        seeds = e.seeds if e.seeds is not None else sf.seeds
        for name, gparams, gtrain, gsystem in _grid_points(e, i, src):
            expanded_names.append(name)
            for dname in ds_names:
                ds = by_name[dname]
                param_layers: list[tuple[tuple, dict]] = []
                train_layers: list[tuple[tuple, dict]] = [(("defaults", "train"), sf.defaults.train)]
                system_layers: list[tuple[tuple, dict]] = [(("defaults", "system"), sf.defaults.system)]
                for j, o in enumerate(sf.overrides):
                    if ((o.datasets is None or dname in o.datasets) and (o.entries is None or e.name in o.entries)
                            and (o.models is None or model_name in o.models)):
                        param_layers.append((("overrides", j, "params"), o.params))
                        train_layers.append((("overrides", j, "train"), o.train))
                        system_layers.append((("overrides", j, "system"), o.system))
                param_layers += [(eloc + ("params",), e.params), (eloc + ("grid",), {f"params.{k}": v for k, v in gparams.items()})]
                train_layers += [(eloc + ("train",), e.train), (eloc + ("grid",), {f"train.{k}": v for k, v in gtrain.items()})]
                system_layers += [(eloc + ("system",), e.system), (eloc + ("grid",), {})]
                params = {k: v for _, d in param_layers[:-1] for k, v in d.items()} | gparams
                train = {k: v for _, d in train_layers[:-1] for k, v in d.items()} | gtrain
                ploc = _grid_aware(_layers_loc(param_layers[:-1]), "params", gparams, eloc)
                tloc = _grid_aware(_layers_loc(train_layers[:-1]), "train", gtrain, eloc)
                sloc = _grid_aware(_layers_loc(system_layers[:-1]), "system", gsystem, eloc)
                knobs = {k: v for _, d in system_layers[:-1] for k, v in d.items()} | gsystem
                train, params, run_system = _resolve_system(knobs, train, params, src,
                                                            {"system": sloc, "train": tloc, "params": ploc})
                for seed in seeds:
                    rtrain = _validate_train(TrainConfig, {**train, "seed": seed}, src, tloc)
                    if rtrain.get("monitor") == "gauc" and getattr(reg.dataset_spec(dname), "group_id", "") is None:
                        raise src.error(f"monitor 'gauc' needs a group id, and {dname} has none; valid here: auc, "
                                        "logloss", tloc("monitor"))
                    if searcher is None:
                        rparams = _validate_params(model_cls, model_name, params, src, ploc,
                                                   reg.dataset_spec(dname))
                        runs.append(RunSpec(
                            suite=sf.name, entry=name, model=model_name, params=rparams, train=rtrain,
                            dataset=ds.name, source=ds.source, rows=ds.rows, data_seed=ds.data_seed, seed=seed,
                            system=system | run_system, twin=ds.twin,
                        ))
                    else:
                        _validate_params(model_cls, model_name, params, src, ploc)  # the fixed part alone is valid
                        searches.append(SearchSpec(
                            suite=sf.name, entry=name, searcher=e.searcher, options=options.model_dump(mode="json"),
                            model=model_name, params=params, train=train, dataset=ds, seed=seed,
                            system=search_system | run_system,
                            loc=eloc,
                        ))
    for entry, per_ds in sf.reference.values.items():
        if entry not in entry_names:
            raise src.error(f"reference for unknown entry {entry!r}; valid: {', '.join(entry_names)}",
                            ("reference", "values", entry))
        for dname in per_ds:
            if dname not in by_name:
                raise src.error(f"reference for dataset {dname!r}, not in this suite; valid: {', '.join(by_name)}",
                                ("reference", "values", entry, dname))
    for i, c in enumerate(sf.checks):
        names = [("entry", c.entry)] + [(("rivals", k), r) for k, r in enumerate(c.rivals)]
        for key, name in names:
            if name not in entry_names:
                raise src.error(f"check {c.name!r}: unknown entry {name!r}; valid: {', '.join(entry_names)}",
                                ("checks", i) + (key if isinstance(key, tuple) else (key,)))
        for k, dname in enumerate(c.datasets or []):
            if dname not in by_name:
                raise src.error(f"check {c.name!r}: dataset {dname!r} is not in this suite; valid: {', '.join(by_name)}",
                                ("checks", i, "datasets", k))
    suite = Suite(sf.name, str(path), sf.description, runs, searches, datasets, list(sf.seeds), expanded_names, reg,
                  sf.reference, list(sf.checks))
    for s in suite.searches:  # every candidate the searcher would propose first must validate now, not mid-run
        for c in _first_candidates(reg, s):
            suite.candidate_spec(s, c.index, c.params, c.train)
    return suite


def _twin_parts(name: str) -> list[str] | None:
    """The signal parts twin `name` plants (None: no twin)."""
    from ctrbench.data.synthetic import KNOBS

    return list(KNOBS[name].shares) if name in KNOBS else None


def _twin_options(reg: Registries, dflt: DatasetDefaults, d: DatasetEntry, j: int, source: str,
                  src: SourceMap) -> dict:
    """The twin options of datasets[j]: defaults.dataset.twin's keys, then the entry's (a real dataset takes
    none: giving it `twin:` is an error, the defaults' apply to the synthetic datasets only)."""
    own = d.twin.model_dump(exclude_none=True) if d.twin is not None else {}
    if source != "synthetic":
        if d.twin is not None:
            raise src.error(f"twin options apply to source synthetic only; {d.name} has source {source!r}",
                            ("datasets", j, "twin"))
        return {}
    base = dflt.twin.model_dump(exclude_none=True) if dflt.twin is not None else {}
    layers = [(("defaults", "dataset", "twin"), base), (("datasets", j, "twin"), own)]
    loc = _layers_loc(layers)
    opts = base | own
    if "shares" in opts:
        parts = _twin_parts(d.name)
        if parts is None:
            raise src.error(f"dataset {d.name!r} has no synthetic twin", loc("shares"))
        for k in opts["shares"]:
            if k not in parts:
                raise src.error(f"twin of {d.name} plants no signal part {k!r}; valid: {', '.join(parts)}",
                                loc("shares") + (k,))
    if "auc_margin" in opts:
        profile = getattr(reg.dataset_spec(d.name), "twin", None)
        best = getattr(profile, "best_published_auc", None)
        target = None if best is None else best + opts["auc_margin"]
        if target is not None and not 0.5 < target < 1.0:
            raise src.error(f"auc_margin {opts['auc_margin']} puts {d.name}'s oracle AUC at {target:.4f} (best "
                            f"published {best}); it must stay in (0.5, 1)", loc("auc_margin"))
    return opts


def _grid_aware(loc_fn: Callable[[str], tuple], section: str, grid: dict, eloc: tuple) -> Callable[[str], tuple]:
    def loc(key: str) -> tuple:
        return eloc + ("grid", f"{section}.{key}") if key in grid else loc_fn(key)

    return loc


def search_evaluator(searcher, suite_path: str | os.PathLike):
    """The evaluator of a search whose candidates are not trained (its `evaluation` kind, from
    ctrbench.search.evaluators), built from the searcher's options; files are relative to the suite file."""
    from ctrbench.search.registry import get_evaluator_class

    return get_evaluator_class(searcher.params.evaluation).for_search(searcher, Path(suite_path).parent)


def _checked_evaluator(searcher, src: SourceMap, eloc: tuple):
    """search_evaluator, with what it lacks as a ConfigError at the searcher option to fix."""
    from ctrbench.search.evaluators.base import EvaluatorSetupError

    kind = searcher.params.evaluation
    try:
        return search_evaluator(searcher, src.file)
    except UnknownNameError as exc:
        raise src.error(f"no evaluator for evaluation {kind!r}; a suite can use: train, {', '.join(exc.valid)}",
                        eloc + ("search", "evaluation")) from None
    except EvaluatorSetupError as exc:
        raise src.error(str(exc), eloc + ("search", exc.option)) from None


def _first_candidates(reg: Registries, s: SearchSpec):
    scls = reg.searcher_class(s.searcher)
    return scls(scls.Params(**s.options)).ask([])
