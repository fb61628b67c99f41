"""A rich progress bar over bytes for long data work; silent in tests and when stderr is not a terminal."""
from __future__ import annotations

import sys
from typing import Callable

from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                           TransferSpeedColumn)


def _noop(_n: int) -> None:
    return None


class ByteProgress:
    """Context manager; `task(description, total_bytes)` returns an `advance(n_bytes)` callback."""

    def __init__(self, enabled: bool = True):
        self.enabled = bool(enabled) and sys.stderr.isatty()
        self._progress: Progress | None = None

    def __enter__(self) -> "ByteProgress":
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                TimeRemainingColumn(), console=Console(stderr=True),
            )
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def task(self, description: str, total: int) -> Callable[[int], None]:
        if self._progress is None:
            return _noop
        progress = self._progress
        tid = progress.add_task(description, total=max(int(total), 1))
        return lambda n: progress.advance(tid, n)
