"""Feature and dataset specs: what each column is, how it is tokenised, and where the data is published.

A spec is pure data (no I/O): readers, the cache, the loader, the twins and the models all read it.
Conventions follow BARS/FuxiCTR: id 0 = padding (of sequences), last id = out-of-vocabulary, vocabularies
fitted on train only, sequences share their target field's vocabulary and are left-padded ("pre"). A missing
categorical value is an ordinary, learnable token (ctrbench.data.preprocess), in prepared data and twins alike.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ctrbench.errors import UnknownNameError


class Kind(str, Enum):
    """What a column is to a model."""

    CATEGORICAL = "categorical"  # one id per row, embedded
    NUMERIC = "numeric"  # one float per row
    SEQUENCE = "sequence"  # a '^'-joined id list, tokenised with its target field's vocabulary
    META = "meta"  # not a model input (group id for gAUC)
    PRETRAINED = "pretrained"  # id column whose embedding comes frozen from a file


@dataclass(frozen=True)
class Feature:
    """One column of a dataset as BARS/FuxiCTR configures it."""

    name: str
    kind: Kind
    source: str | None = None  # raw column name when it differs from `name`
    min_count: int = 1  # tokens seen fewer times in train map to OOV
    share_vocab: str | None = None  # sequences/pretrained: the categorical field whose vocabulary they use
    max_len: int = 0  # sequences: kept length (the most recent max_len ids)
    padding: str = "pre"  # sequences: pad (and truncate) on the left, as FuxiCTR's default "pre"
    splitter: str = "^"
    transform: str = "none"  # numeric: see ctrbench.data.preprocess.NUMERIC_TRANSFORMS
    pretrained_dim: int = 0  # pretrained: vector size in the published file
    cardinality: int = 0  # published vocabulary size incl. PAD and OOV (0 = unknown); the twins scale it

    @property
    def column(self) -> str:
        return self.source or self.name

    @property
    def vocab_owner(self) -> str:
        """The field whose vocabulary this feature's ids live in."""
        return self.share_vocab or self.name


@dataclass(frozen=True)
class TwinProfile:
    """What a synthetic twin imitates: base CTR, sequence lengths and the AUC it must be as hard as."""

    base_ctr: float
    best_published_auc: float  # best AUC on the real data (BARS); the twin's oracle sits a little above
    mean_seq_len: float = 0.0  # mean history length before truncation
    default_rows: int = 200_000  # the default size trains in minutes on 2 cores
    n_users: int = 0  # sequential twins: users drive histories and group ids
    days: int = 0  # Criteo Terabyte: daily files with mild drift


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its features, label, group id, splits and published files."""

    name: str
    title: str
    features: tuple[Feature, ...]
    label: str
    file_format: str  # reader key, e.g. "x1_csv", "criteo_tsv", "avazu_csv"
    splits: dict[str, str]  # split -> file name (relative to --source)
    published_at: str  # where users download the real files
    embedding_dim: int
    twin: TwinProfile
    group_id: str | None = None
    md5: dict[str, str] = field(default_factory=dict)  # file name -> md5 of the published file
    valid_is_test: bool = False  # BARS validates on test for the sequential x1 sets (reported, not hidden)
    notes: str = ""

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise UnknownNameError(f"feature of {self.name}", name, [f.name for f in self.features])

    def of_kind(self, *kinds: Kind) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.kind in kinds)

    @property
    def categorical(self) -> tuple[Feature, ...]:
        return self.of_kind(Kind.CATEGORICAL)

    @property
    def numeric(self) -> tuple[Feature, ...]:
        return self.of_kind(Kind.NUMERIC)

    @property
    def sequences(self) -> tuple[Feature, ...]:
        return self.of_kind(Kind.SEQUENCE)

    @property
    def pretrained(self) -> tuple[Feature, ...]:
        return self.of_kind(Kind.PRETRAINED)

    @property
    def is_sequential(self) -> bool:
        return bool(self.sequences)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DatasetSpec":
        d = dict(d)
        d["features"] = tuple(Feature(**{**f, "kind": Kind(f["kind"])}) for f in d["features"])
        d["twin"] = TwinProfile(**d["twin"])
        return cls(**d)


def categorical(name: str, cardinality: int = 0, **kw) -> Feature:
    return Feature(name, Kind.CATEGORICAL, cardinality=cardinality, **kw)


def numeric(name: str, transform: str = "none", **kw) -> Feature:
    return Feature(name, Kind.NUMERIC, transform=transform, **kw)


def sequence(name: str, share_vocab: str, max_len: int, **kw) -> Feature:
    return Feature(name, Kind.SEQUENCE, share_vocab=share_vocab, max_len=max_len, **kw)


def meta(name: str, **kw) -> Feature:
    return Feature(name, Kind.META, **kw)
