"""Run a Triton test module under TRITON_INTERPRET=1 in a child pytest process.

Triton decides at decoration time whether a kernel is interpreted, so the interpreted tests cannot run in the
parent process (it may already hold compiled-mode kernels, e.g. for the sm_90 ahead-of-time compile test).
A module defines its interpreted tests under `if INTERPRETED:` and, otherwise, one test that calls
`run_interpreted(__file__)`.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


def run_interpreted(test_file: str, timeout: float = 600) -> None:
    """Run pytest on `test_file` with TRITON_INTERPRET=1; fail unless it passed with nothing skipped."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file],
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert re.search(r"\d+ passed", proc.stdout) and "skipped" not in proc.stdout, proc.stdout[-2000:]
