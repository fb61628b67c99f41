"""Where a search keeps what it must not lose: the searcher's state after each ask (with the batch it proposed)
and every evaluation of any kind. `SearchJournal` is the interface `run_search` uses. `FileJournal` keeps one
search in a folder (state.json replaced atomically, evaluations.jsonl appended and fsynced); `StoreJournal` keeps it
in the run store (the searches and evaluations tables, one transaction each), which is what the harness uses. With
either, a search killed at any instant -- SIGKILL included -- resumes from its last state with none of its
recorded evaluations lost.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Protocol

from ctrbench.errors import DataError
from ctrbench.runs.store import RunStore, utc_now
from ctrbench.search.base import Candidate, Evaluation


class SearchJournal(Protocol):
    def history(self) -> list[Evaluation]:
        """Every evaluation recorded so far, in order."""

    def load_state(self) -> tuple[dict, list[Candidate]] | None:
        """The last saved searcher state and the batch it had just proposed (None for a new search)."""

    def save_state(self, state: dict, batch: list[Candidate]) -> None:
        ...

    def append(self, evaluation: Evaluation) -> None:
        ...


def encode_state(state: dict, batch: list[Candidate]) -> dict:
    """A searcher state and the batch it just proposed, as the JSON both journals keep."""
    return {"state": state, "batch": [c.to_json() for c in batch]}


def decode_state(saved: dict) -> tuple[dict, list[Candidate]]:
    return saved["state"], [Candidate.from_json(c) for c in saved["batch"]]


class FileJournal:
    """One search in `folder`: state.json and evaluations.jsonl."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.state_path, self.log_path = self.folder / "state.json", self.folder / "evaluations.jsonl"

    def history(self) -> list[Evaluation]:
        if not self.log_path.exists():
            return []
        self._drop_cut_line()
        lines = self.log_path.read_text().split("\n")
        out = []
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                out.append(Evaluation.from_json(json.loads(line)))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataError(f"unreadable evaluation record: {exc}", file=str(self.log_path), line=n) from None
        return out

    def _drop_cut_line(self) -> None:
        """A kill mid-append leaves a last line without its newline: that evaluation never finished; cut it."""
        data = self.log_path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.log_path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def load_state(self) -> tuple[dict, list[Candidate]] | None:
        if not self.state_path.exists():
            return None
        try:
            return decode_state(json.loads(self.state_path.read_text()))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"unreadable searcher state: {exc}", file=str(self.state_path)) from None

    def save_state(self, state: dict, batch: list[Candidate]) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(encode_state(state, batch), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    def append(self, evaluation: Evaluation) -> None:
        with open(self.log_path, "a") as f:
            f.write(json.dumps(evaluation.to_json()) + "\n")
            f.flush()
            os.fsync(f.fileno())


class StoreJournal:
    """One search in the run store: the searcher's state in its `searches` row, every evaluation (any kind) in
    `evaluations`; a `train` evaluation stores its run's config hash and gets its RunRecord back on resume.
    `point_hash` (the space's hash) fills the evaluations' point_hash column where candidates have points."""

    def __init__(self, store: RunStore, search_id: str, searcher: str,
                 point_hash: Callable[[dict], str] | None = None):
        self.store, self.search_id, self.searcher, self.point_hash = store, search_id, searcher, point_hash

    def history(self) -> list[Evaluation]:
        out = []
        for row in self.store.evaluations(search_id=self.search_id):
            record = self.store.get(row["config_hash"]) if row["config_hash"] else None
            out.append(Evaluation(Candidate.from_json(row["candidate"]), row["status"], row["value"], record,
                                  row["metrics"] or {}, row["cost_seconds"]))
        return out

    def load_state(self) -> tuple[dict, list[Candidate]] | None:
        saved = self.store.search_state(self.search_id)
        return None if saved is None else decode_state(saved)

    def save_state(self, state: dict, batch: list[Candidate]) -> None:
        self.store.save_search_state(self.search_id, self.searcher, encode_state(state, batch))

    def append(self, evaluation: Evaluation) -> None:
        c, seconds = evaluation.candidate, evaluation.seconds
        started = None if seconds is None else utc_now(time.time() - seconds)
        self.store.put_evaluation(
            self.search_id, c.index, kind=evaluation.kind, status=evaluation.status, value=evaluation.value,
            point_hash=self.point_hash(c.point) if self.point_hash and c.point is not None else None, point=c.point,
            candidate=c.to_json(), metrics=evaluation.metrics,
            config_hash=getattr(evaluation.record, "config_hash", None), cost_seconds=seconds, started_at=started,
            finished_at=utc_now())
