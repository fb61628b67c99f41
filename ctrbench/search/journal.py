"""Where a search keeps what it must not lose: the searcher's state after each ask (with the batch it proposed)
and every evaluation of any kind. `SearchJournal` is the interface `run_search` uses; `FileJournal` keeps one
search in a folder (state.json replaced atomically, evaluations.jsonl appended and fsynced), so a search killed at
any instant -- SIGKILL included -- resumes from its last state with none of its finished evaluations lost.
(The run store does not hold searcher state yet; a store-backed journal belongs with the run-store move.)
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

from ctrbench.errors import DataError
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
            d = json.loads(self.state_path.read_text())
            return d["state"], [Candidate.from_json(c) for c in d["batch"]]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"unreadable searcher state: {exc}", file=str(self.state_path)) from None

    def save_state(self, state: dict, batch: list[Candidate]) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump({"state": state, "batch": [c.to_json() for c in batch]}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    def append(self, evaluation: Evaluation) -> None:
        with open(self.log_path, "a") as f:
            f.write(json.dumps(evaluation.to_json()) + "\n")
            f.flush()
            os.fsync(f.fileno())
