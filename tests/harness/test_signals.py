"""Signals with the process pool, through the real CLI in a subprocess: Ctrl-C on the process group, SIGTERM of
the parent (handled like Ctrl-C) and SIGKILL of the parent (the workers die with it) each stop the pool
promptly, leave every unfinished run `interrupted` (none `running`, none `failed`), start nothing new, and
leave no worker behind. Each test kills the whole process group in a finally block."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctrbench.runs.store import RunStore, process_alive

# four runs of about 15 s each on two workers: both are mid-run when the signal comes, two wait in the queue
SLOW = """
name: slow
defaults:
  train: {max_epochs: 30, patience: 30, batch_size: 16, eval_batch_size: 4096}
  dataset: {rows: 3000}
datasets: [{name: criteo_x1}]
seeds: [0, 1, 2, 3]
entries: [{name: dnn, model: dnn, params: {hidden_units: [64]}}]
measure: {warmup: 1, steps: 2}
"""
START_TIMEOUT_S = 60  # two workers spawn and import torch on a shared 2-core box
STOP_TIMEOUT_S = 15


def _sigint_default() -> None:
    """In the child before exec: SIGINT back to its default, so the child's Python turns it into Ctrl-C. A test
    run started in the background by a non-interactive shell (`make test &`) inherits SIGINT ignored, and a CLI
    that starts with SIGINT ignored rightly keeps ignoring it (nohup-like); the ctrl-c test failed that way."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _running(store_path) -> list:
    if not store_path.exists():
        return []
    try:
        return [r for r in RunStore(store_path, create=False).records() if r.status == "running"]
    except Exception:  # noqa: BLE001 - the store is being created by the suite
        return []


def _start_pool(write_suite, tmp_path, data_root):
    from ctrbench.data.api import open_dataset

    open_dataset("criteo_x1", "synthetic", rows=3000, seed=0, data_root=data_root)  # built here, not in the suite
    store_path = tmp_path / "runs.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ctrbench.cli", "run", str(write_suite(SLOW)), "--store", str(store_path),
         "--data-root", str(data_root), "--executor", "process", "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=_sigint_default)
    deadline = time.monotonic() + START_TIMEOUT_S
    while len(_running(store_path)) < 2:
        assert proc.poll() is None, proc.communicate()
        if time.monotonic() > deadline:
            pytest.fail("the two workers did not start their runs in time")
        time.sleep(0.1)
    return proc, store_path


def _wait_dead(pids, timeout_s) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = [pid for pid, start in pids if process_alive(pid, start)]
        if not alive:
            return []
        time.sleep(0.1)
    return alive


def _signal_masks(pid: int) -> str:
    """Each thread's pending, blocked, ignored and caught signal masks, from /proc (Linux)."""
    out = []
    for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
        try:
            lines = (task / "status").read_text().splitlines()
        except OSError:
            continue
        keep = [ln for ln in lines if ln.split(":")[0] in ("Name", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")]
        out.append(f"{task.name}: " + "  ".join(" ".join(ln.split()) for ln in keep))
    return "\n".join(out)


def _communicate_or_dump(proc, how) -> str:
    """The parent's stderr once it exits; if it does not within STOP_TIMEOUT_S, fail with its threads' stacks
    (the CLI prints them on SIGUSR1) and which processes of its group are still alive."""
    try:
        return proc.communicate(timeout=STOP_TIMEOUT_S)[1]
    except subprocess.TimeoutExpired:
        group = subprocess.run(["ps", "-o", "pid,stat,etime,time,args", "-g", str(proc.pid)], capture_output=True,
                               text=True).stdout
        masks = _signal_masks(proc.pid)
        os.kill(proc.pid, signal.SIGUSR1)
        time.sleep(2)
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"the parent did not exit within {STOP_TIMEOUT_S} s of the {how}; its group:\n{group}\n"
                    f"its threads' signal masks (hex; bit 1 = SIGINT, bit 14 = SIGTERM):\n{masks}\n"
                    f"its stderr, stacks last:\n{err[-6000:]}")


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "sigkill"])
def test_signals_stop_the_pool_and_mark_unfinished_runs_interrupted(how, write_suite, tmp_path, data_root):
    proc, store_path = _start_pool(write_suite, tmp_path, data_root)
    try:
        running = _running(store_path)
        workers = [(r.pid, r.pid_start) for r in running]
        assert os.getpid() not in {pid for pid, _ in workers} and proc.pid not in {pid for pid, _ in workers}
        t0 = time.monotonic()
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # what the terminal does: the whole group gets SIGINT
        else:
            os.kill(proc.pid, signal.SIGTERM if how == "sigterm" else signal.SIGKILL)  # the parent alone
        err = _communicate_or_dump(proc, how)
        stopped_in = time.monotonic() - t0
        assert not _wait_dead(workers, STOP_TIMEOUT_S), f"workers outlived the {how}"
        if how == "sigkill":
            assert proc.returncode == -signal.SIGKILL
        else:
            signum = signal.SIGINT if how == "ctrl-c" else signal.SIGTERM
            assert proc.returncode == 128 + signum, err
            assert stopped_in < 10, f"the pool took {stopped_in:.1f} s to stop"
            assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "interrupted" in err, err
        deadline = time.monotonic() + STOP_TIMEOUT_S  # after SIGKILL the workers mark their own runs on SIGTERM
        while _running(store_path) and time.monotonic() < deadline:
            time.sleep(0.1)
        recs = RunStore(store_path, create=False).records()
        assert {r.config_hash for r in recs} == {r.config_hash for r in running}, "a queued run started"
        assert [r.status for r in recs] == ["interrupted", "interrupted"], (
            f"{[(r.status, r.pid, r.error) for r in recs]}\nthe CLI's and workers' stderr:\n{err[-6000:]}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


# A pool worker that gets SIGTERM just after its claim committed (before the run's own marking is in place):
# the worker's init and run as the pool calls them, in a child process, with the claim patched to SIGTERM its own
# process once the "running" row is committed.
CLAIM_THEN_SIGTERM = """
import os, signal, sqlite3, sys
from ctrbench.harness import runner
from ctrbench.harness.suite import load_suite
from ctrbench.runs.store import RunStore

suite_path, store_path, data_root = sys.argv[1:4]
claim = RunStore.claim
def claim_then_sigterm(self, *args, **kwargs):
    out = claim(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGTERM)
    return out
RunStore.claim = claim_then_sigterm
if len(sys.argv) > 4 and sys.argv[4] == "marking-fails":
    def fails(self, *args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")
    RunStore.mark_interrupted_of_process = fails
runner._worker_init(1, os.getppid())
spec = load_suite(suite_path).runs[0]
runner._worker_run(spec.to_dict(), store_path, False, data_root, None)
print("the run went on after SIGTERM")
"""


def test_a_worker_signalled_between_claim_and_run_marks_its_run(write_suite, tmp_path, data_root):
    store_path = tmp_path / "runs.sqlite"
    proc = subprocess.run([sys.executable, "-c", CLAIM_THEN_SIGTERM, str(write_suite(SLOW)), str(store_path),
                           str(data_root)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stdout + proc.stderr
    (rec,) = RunStore(store_path, create=False).records()
    assert rec.status == "interrupted" and "SIGTERM" in rec.error, (rec.status, rec.error)


# The parent waits on the pool while a Ctrl-C is handed, by the kernel, to one of its other threads: CPython's C
# handler only sets a flag there, so an untimed wait in the main thread never sees it until a run finishes.
WAIT_THEN_SIGNAL_ANOTHER_THREAD = """
import concurrent.futures as cf, signal, sys, threading, time
from ctrbench.harness.runner import _as_completed_waking

helper = threading.Thread(target=time.sleep, args=(60,), daemon=True)
helper.start()
threading.Timer(0.5, lambda: signal.pthread_kill(helper.ident, signal.SIGINT)).start()
wait = cf.as_completed if sys.argv[1] == "untimed" else _as_completed_waking
t0 = time.monotonic()
try:
    for _ in wait([cf.Future()], 5) if sys.argv[1] == "untimed" else wait([cf.Future()]):
        pass
except KeyboardInterrupt:
    print(f"interrupted after {time.monotonic() - t0:.2f} s")
except cf.TimeoutError:
    print("not interrupted")
"""


@pytest.mark.parametrize("wait", ["untimed", "waking"])
def test_the_pool_wait_sees_a_ctrl_c_that_another_thread_received(wait):
    out = subprocess.run([sys.executable, "-c", WAIT_THEN_SIGNAL_ANOTHER_THREAD, wait], preexec_fn=_sigint_default,
                         capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.startswith("interrupted after"), out
    seconds = float(out.stdout.split()[2])
    if wait == "untimed":  # the failure mode: the Ctrl-C acts only when as_completed's own 5 s timeout wakes it
        assert seconds >= 4.9, out
    else:
        assert seconds < 0.5 + 2 * 0.5 + 1.0, out  # the signal at 0.5 s, then at most a WAKE_S step (and slack)


def test_a_worker_whose_marking_fails_still_leaves_and_the_next_start_recovers_its_run(write_suite, tmp_path,
                                                                                        data_root):
    store_path = tmp_path / "runs.sqlite"
    proc = subprocess.run([sys.executable, "-c", CLAIM_THEN_SIGTERM, str(write_suite(SLOW)), str(store_path),
                           str(data_root), "marking-fails"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stdout + proc.stderr
    assert "could not mark its run interrupted (disk I/O error)" in proc.stderr, proc.stderr
    store = RunStore(store_path, create=False)
    (rec,) = store.records()
    assert rec.status == "running"  # nobody could mark it: the worker is gone
    assert store.recover() == [rec.config_hash] and store.get(rec.config_hash).status == "interrupted"
