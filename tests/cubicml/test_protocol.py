"""The measurement protocol's stopping rule on a synthetic timer (known step-time distributions), the median's
confidence interval, and the load probe's flag."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ctrbench.cubicml.protocol import LoadProbe, TimingProtocol, median_ci, precision_reached, time_until_stable


class SyntheticTimer:
    """A clock that each step advances by a drawn duration (no real time passes)."""

    def __init__(self, draw):
        self.now, self.draw, self.steps = 0.0, draw, 0

    def clock(self) -> float:
        return self.now

    def step(self, i: int) -> None:
        self.now += self.draw()
        self.steps += 1


def _run(draw, **kw) -> tuple:
    timer = SyntheticTimer(draw)
    return time_until_stable(timer.step, TimingProtocol(**kw), clock=timer.clock), timer


def test_steady_steps_stop_at_the_minimum():
    timing, timer = _run(lambda: 0.010, warmup=3, min_steps=10, precision=0.03, max_steps=100)
    assert len(timing.times) == 10 and timer.steps == 13 and timing.converged
    assert timing.summary["step_time_cv"] < 1e-9 and timing.summary["step_time_ci_rel"] < 1e-9


def test_noisy_steps_run_on_until_the_median_is_known_within_precision():
    rng = np.random.default_rng(0)
    timing, _ = _run(lambda: 0.01 * rng.lognormal(0, 0.15), warmup=0, min_steps=10, precision=0.03, max_steps=2000)
    n = len(timing.times)
    assert 10 < n < 2000 and timing.converged
    assert timing.summary["step_time_ci_rel"] <= 0.03
    assert not precision_reached(timing.times[:-1], 0.03)  # it stopped at the first step the rule held
    assert abs(np.median(timing.times) - 0.01) / 0.01 < 0.03  # lognormal(0, s): the true median is 0.01
    assert timing.summary["step_time_cv"] == pytest.approx(0.15, rel=0.3)


def test_hopeless_noise_stops_at_the_cap_unconverged():
    rng = np.random.default_rng(1)
    timing, _ = _run(lambda: rng.lognormal(-4, 1.5), min_steps=5, precision=0.01, max_steps=40)
    assert len(timing.times) == 40 and not timing.converged and timing.summary["timing_converged"] is False


def test_time_cap_stops_long_steps():
    timing, _ = _run(lambda: 10.0 * (1 + np.random.default_rng().random()), min_steps=3, precision=0.001,
                     max_steps=1000, max_seconds=100.0)
    assert 3 <= len(timing.times) <= 11


def test_no_precision_times_exactly_min_steps():
    timing, timer = _run(lambda: 0.5 + np.random.default_rng().random(), warmup=2, min_steps=7, max_steps=7,
                         precision=None)
    assert len(timing.times) == 7 and timer.steps == 9 and timing.converged


def test_the_agreed_decision_rules_every_process():
    timer = SyntheticTimer(lambda: 0.01)
    decisions = iter([False] * 30 + [True])
    timing = time_until_stable(timer.step, TimingProtocol(min_steps=2, max_steps=5), clock=timer.clock,
                               agree=lambda stop: next(decisions))
    assert len(timing.times) == 31  # rank 0 said go on past this rank's own cap


def test_median_ci_covers_the_median_as_stated():
    rng = np.random.default_rng(2)
    hits = sum(lo <= 0.0 <= hi for lo, hi in (median_ci(rng.normal(size=25)) for _ in range(400)))
    assert hits / 400 >= 0.93


def test_bad_protocol_is_refused():
    with pytest.raises(ValueError):
        TimingProtocol(min_steps=10, max_steps=5)
    with pytest.raises(ValueError):
        TimingProtocol(precision=1.5)


def test_load_probe_flags_other_processes_using_the_cpus():
    with LoadProbe(tolerance=0.2) as probe:
        busy = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<1.5: pass"])
        busy.wait()  # not reaped into our children's CPU time until wait() returns: count it, then measure
    # a waited-for child counts as ours (os.times children_*), so spin a second one that is not waited for
    with LoadProbe(tolerance=0.2) as other:
        busy = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<1.5: pass"])
        import time
        time.sleep(1.5)
    busy.wait()
    assert other.result["loaded"] and other.result["others_cpu_cores"] > 0.2
    assert set(probe.result) >= {"loadavg_before", "loadavg_after", "others_cpu_cores", "loaded"}
    with LoadProbe(tolerance=float("inf")) as calm:
        pass
    assert calm.result["loaded"] is False
