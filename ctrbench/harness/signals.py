"""Signals of a running suite: Ctrl-C and SIGTERM stop it the same way (an `Interrupted` exception), pool
workers die with their parent, and a run that fails after an interrupt is an interrupted run, not a result.

- `interrupt_signals()`: while a suite runs, SIGINT and SIGTERM raise Interrupted (a KeyboardInterrupt) in the
  main thread and set a flag; a signal that is ignored (a pool worker's SIGINT) stays ignored. The exception can
  be lost: a handler that runs inside a finalizer (`__del__`, a weakref callback, a generator closed by the
  garbage collector) only prints "Exception ignored", so a run checks the flag again at every batch.
- `deferred()`: signals wait until a finished run's record is written.
- `ignored(SIGINT)`: processes spawned inside it start with SIGINT ignored (the disposition survives exec and
  Python keeps it), so Ctrl-C on the terminal reaches only the parent, which stops the pool itself.
- `die_with_parent(pid)`: Linux's parent-death signal (prctl PR_SET_PDEATHSIG): a worker gets SIGTERM when
  the process that spawned it dies, even by SIGKILL, so no worker outlives the suite.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

from ctrbench.errors import Interrupted

PR_SET_PDEATHSIG = 1  # linux/prctl.h
_requested = threading.Event()
_last_signum = [int(signal.SIGINT)]


def requested() -> bool:
    """Whether SIGINT or SIGTERM arrived since the suite started."""
    return _requested.is_set()


def raise_if_requested() -> None:
    """Raise Interrupted (with the signal that came) if an interrupt was requested: for the places that check
    again, because the handler's own exception can be lost (see `Interrupted` swallowed in a finalizer)."""
    if _requested.is_set():
        raise Interrupted(_last_signum[0])


def _raise_interrupted(signum, frame):
    _last_signum[0] = signum
    _requested.set()
    raise Interrupted(signum)


@contextmanager
def interrupt_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise Interrupted while inside (main thread only; elsewhere a no-op). Handlers are
    restored on exit; a signal whose handler is SIG_IGN is left ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            old[signum] = signal.signal(signum, _raise_interrupted)
    try:
        yield
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)


def clear() -> None:
    """Forget an earlier interrupt (a new suite starts)."""
    _requested.clear()


@contextmanager
def ignored(*signums: int) -> Iterator[None]:
    """Ignore these signals while inside (main thread): processes spawned here start with them ignored, and a
    clean-up in here is not cut short by a second Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {signum: signal.signal(signum, signal.SIG_IGN) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while inside (main thread) and deliver them on exit: a finished run's
    record is written whole before an interrupt acts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to send this process SIGTERM when its parent dies; exit now if the parent is already gone.
    Elsewhere a no-op (the parent's SIGINT/SIGTERM handling still stops its workers)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(err)}")
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(128 + signal.SIGTERM)
