"""Data-parallel runs, started the way torchrun starts them: `launch` runs `python -m torch.distributed.run
--standalone --nproc-per-node N -m ctrbench.cubicml.ddp ...` (N processes, each with the run's threads), and every
process executes the same run inside a torch.distributed process group (gloo on the CPU, NCCL on CUDA); the
trainer and the cost measurement see the group and train through DDP. Rank 0 writes the record. On more machines
the same worker runs under `torchrun --nnodes M --rdzv-endpoint HOST:PORT`, which sets the same environment."""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from ctrbench.runs.records import DONE, RunRecord, RunSpec

STDERR_TAIL = 3000


class DistributedRunError(RuntimeError):
    """The torchrun workers ended without a record (the message holds torchrun's exit status and stderr tail)."""


def launch(run: RunSpec, record: RunRecord, *, world_size: int, threads: int | None, data_root=None,
           timeout_s: float = 3600.0) -> RunRecord:
    """Execute `run` in `world_size` torchrun-started processes and return rank 0's record (it keeps `record`'s
    identity fields). Stopping this process (Ctrl-C, SIGTERM) stops the whole process group it started."""
    with tempfile.TemporaryDirectory(prefix="ctrbench-ddp-") as tmp:
        spec_path, claim_path, out_path = (Path(tmp) / n for n in ("spec.json", "claim.json", "record.json"))
        spec_path.write_text(json.dumps(run.to_dict()))
        claim_path.write_text(json.dumps(record.to_dict()))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
               f"--nproc-per-node={world_size}", "-m", "ctrbench.cubicml.ddp", "--spec", str(spec_path),
               "--claim", str(claim_path), "--out", str(out_path)]
        if data_root is not None:
            cmd += ["--data-root", str(data_root)]
        env = dict(os.environ)
        env["OMP_NUM_THREADS"] = str(threads or max(1, (os.cpu_count() or 1) // world_size))
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except BaseException:
            _stop_group(proc)
            raise
        if not out_path.exists():
            raise DistributedRunError(f"the {world_size} DDP workers ended (torchrun exit {proc.returncode}) without "
                                      f"a record; stderr (end):\n{err[-STDERR_TAIL:]}")
        out = RunRecord.from_dict(json.loads(out_path.read_text()))
        out.extra["launcher"] = {"command": "torchrun --standalone --nnodes 1 "
                                 f"--nproc-per-node={world_size} -m ctrbench.cubicml.ddp",
                                 "exit": proc.returncode, "omp_num_threads": env["OMP_NUM_THREADS"]}
        return out


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to torchrun's process group (it forwards to its workers), SIGKILL after 5 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def dist_backend(requested: str, device: str) -> str:
    """The process-group backend: the knob, or for 'auto' NCCL on CUDA devices and gloo on the CPU."""
    if requested != "auto":
        return requested
    import torch

    on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "nccl" if on_cuda else "gloo"


def main(argv: list[str] | None = None) -> int:
    """One torchrun worker: join the process group from torchrun's environment, execute the run, rank 0 writes
    the record. Exits 1 when the run did not finish (torchrun then stops the other workers)."""
    import torch
    import torch.distributed as dist

    from ctrbench.cubicml.system import run_knobs
    from ctrbench.harness.execute import execute_run

    p = argparse.ArgumentParser(prog="python -m ctrbench.cubicml.ddp")
    p.add_argument("--spec", required=True)
    p.add_argument("--claim", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--data-root", default=None)
    p.add_argument("--timeout-s", type=float, default=600.0, help="collective timeout")
    args = p.parse_args(argv)
    run = RunSpec.from_dict(json.loads(Path(args.spec).read_text()))
    claim = RunRecord.from_dict(json.loads(Path(args.claim).read_text()))
    device = run.train.get("device", "cpu")
    backend = dist_backend(run_knobs(run.system).dist_backend, device)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend, timeout=timedelta(seconds=args.timeout_s))
    try:
        rec = execute_run(run, data_root=args.data_root, record=claim)
        rec.extra["dist_backend"] = backend
        if dist.get_rank() == 0:
            tmp = Path(args.out).with_suffix(".tmp")
            tmp.write_text(json.dumps(rec.to_dict(), default=str))
            tmp.replace(args.out)
    finally:
        dist.destroy_process_group()
    return 0 if rec.status in DONE else 1


if __name__ == "__main__":
    sys.exit(main())
