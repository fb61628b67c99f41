"""The measurement protocol of the performance dataset: warm-up, then timed steps until the median step time is
known within ±`precision` (a distribution-free 95% confidence interval of the median, from order statistics) or
a cap is reached; the coefficient of variation is recorded; the machine's load is checked around the timing, and a
measurement during which other processes used the CPUs is flagged `loaded`, never silently kept as clean.
ctrbench's design (specs/search.md §9.11), not the CubicML paper's."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class TimingProtocol:
    """warmup untimed steps, then at least min_steps timed ones; with `precision`, on until the median's CI
    half-width is within precision x median, or max_steps / max_seconds (then `converged` is False)."""

    warmup: int = 3
    min_steps: int = 10
    precision: float | None = 0.03
    max_steps: int = 200
    max_seconds: float = 120.0
    confidence: float = 0.95

    def __post_init__(self):
        if self.warmup < 0 or self.min_steps < 1 or self.max_steps < self.min_steps:
            raise ValueError(f"a timing protocol needs warmup >= 0 and 1 <= min_steps <= max_steps; got {self}")
        if self.precision is not None and not 0 < self.precision < 1:
            raise ValueError(f"precision must be in (0, 1), got {self.precision}")


def median_ci(times: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The distribution-free confidence interval of the median: order statistics x_(j), x_(k) with j, k from the
    Binomial(n, 1/2) quantiles (exact coverage >= `confidence` for continuous data; the sample range when n is too
    small for it)."""
    x = np.sort(np.asarray(times, dtype=float))
    n = len(x)
    alpha = 1 - confidence
    lower = int(stats.binom.ppf(alpha / 2, n, 0.5))  # 1-based rank l: P(l <= B <= n - l) >= confidence
    return float(x[max(lower - 1, 0)]), float(x[min(n - lower, n - 1)])


def precision_reached(times: np.ndarray, precision: float, confidence: float = 0.95) -> bool:
    """True when the median's CI lies within ±precision of the median."""
    lo, hi = median_ci(times, confidence)
    med = float(np.median(times))
    return med > 0 and max(med - lo, hi - med) <= precision * med


@dataclass
class Timing:
    times: np.ndarray  # seconds per timed step
    converged: bool  # the precision was reached (always True without a precision)
    ci: tuple[float, float] = (0.0, 0.0)
    summary: dict = field(default_factory=dict)


def time_until_stable(step: Callable[[int], None], protocol: TimingProtocol, *,
                      clock: Callable[[], float] = time.perf_counter, sync: Callable[[], None] = lambda: None,
                      agree: Callable[[bool], bool] = lambda stop: stop) -> Timing:
    """Run `step(i)` protocol.warmup times untimed, then timed until the stopping rule holds (see TimingProtocol).
    `sync` runs before each clock read (CUDA synchronisation); `agree` turns this process's decision to stop into
    the decision every process takes (under DDP: rank 0's, broadcast), so all ranks take the same number of steps."""
    for i in range(protocol.warmup):
        step(i)
    times: list[float] = []
    started = clock()
    i = protocol.warmup
    while True:
        sync()
        t0 = clock()
        step(i)
        sync()
        t1 = clock()
        times.append(t1 - t0)
        i += 1
        n = len(times)
        enough = protocol.precision is None or precision_reached(np.asarray(times), protocol.precision,
                                                                 protocol.confidence)
        capped = n >= protocol.max_steps or t1 - started >= protocol.max_seconds
        stop = n >= protocol.min_steps and (enough or capped)
        if agree(stop):
            break
    arr = np.asarray(times)
    converged = protocol.precision is None or precision_reached(arr, protocol.precision, protocol.confidence)
    lo, hi = median_ci(arr, protocol.confidence)
    med = float(np.median(arr))
    summary = {"timed_steps": len(arr), "timing_converged": bool(converged),
               "step_time_cv": float(arr.std(ddof=1) / arr.mean()) if len(arr) > 1 and arr.mean() > 0 else None,
               "step_time_ci_rel": float(max(med - lo, hi - med) / med) if med > 0 else None,
               "timing_precision": protocol.precision}
    return Timing(arr, bool(converged), (lo, hi), summary)


# ----------------------------------------------------------------------------------------------- machine load
def _cpu_busy_seconds() -> float | None:
    """Busy CPU seconds of the whole machine since boot (/proc/stat: all but idle and iowait); None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields]
    busy = sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """CPU seconds of this process and its waited-for children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class LoadProbe:
    """Machine load around a measurement: load averages before and after, and the CPU others used meanwhile (cores
    busy on average with work not this process's). `loaded` when others used more than `tolerance` cores."""

    tolerance: float = 0.25
    clock: Callable[[], float] = time.monotonic
    _start: tuple | None = None

    def __enter__(self) -> "LoadProbe":
        self._start = (self.clock(), _cpu_busy_seconds(), _own_cpu_seconds(), os.getloadavg())
        return self

    def __exit__(self, *exc) -> None:
        self.result = self.finish()

    def finish(self) -> dict:
        t0, busy0, own0, load0 = self._start
        t1, busy1, own1, load1 = self.clock(), _cpu_busy_seconds(), _own_cpu_seconds(), os.getloadavg()
        wall = max(t1 - t0, 1e-9)
        others = None if busy0 is None or busy1 is None else max(0.0, (busy1 - busy0) - (own1 - own0)) / wall
        loaded = others is not None and others > self.tolerance
        return {"loadavg_before": list(load0), "loadavg_after": list(load1), "others_cpu_cores": others,
                "load_tolerance_cores": self.tolerance, "loaded": loaded, "seconds": wall}
