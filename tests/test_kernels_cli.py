"""`ctrbench kernels info | verify | bench` through ctrbench.cli.main."""
from __future__ import annotations

import csv
import json

import pytest
import torch

import ctrbench.kernels.entropy_fusion.bench as fusion_bench
import ctrbench.kernels.entropy_fusion.verify as fusion_verify
from ctrbench.cli import main
from ctrbench.kernels_cli import op_module


def test_info_lists_backends_and_ops(capsys):
    assert main(["kernels", "info"]) == 0
    out = capsys.readouterr().out
    for word in ("reference", "triton", "cpp", "cuda", "TRITON_INTERPRET=1", "entropy_fusion"):
        assert word in out


def test_verify_entropy_fusion_on_cpu_passes(capsys):
    assert main(["kernels", "verify", "--device", "cpu", "--ops", "entropy_fusion"]) == 0
    out = capsys.readouterr().out
    assert "all checks passed" in out and "B=65536 K=4" in out and "FAIL" not in out


def test_verify_exits_1_when_a_row_fails(monkeypatch, capsys):
    monkeypatch.setattr(fusion_verify, "verify", lambda device: [
        {"op": "entropy_fusion", "backend": "cpp", "case": "x", "ok": False, "detail": "fused=3"}])
    assert main(["kernels", "verify", "--device", "cpu", "--ops", "entropy_fusion"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_an_op_without_its_module_is_an_error():
    with pytest.raises(RuntimeError, match="'no_such_op'.*verify"):
        op_module("no_such_op", "verify")


def test_bench_writes_csv_and_readme(monkeypatch, tmp_path, capsys):
    # the real bench code on one small shape, without the slow torch.compile baseline
    monkeypatch.setattr(fusion_bench, "QUICK_SIZES", (512,))
    monkeypatch.setattr(fusion_bench, "steady_state_allocator", lambda: True)  # keep this process's malloc as is
    all_providers = fusion_bench.providers
    monkeypatch.setattr(fusion_bench, "providers",
                        lambda device: {k: v for k, v in all_providers(device).items() if k != "compiled"})
    out = tmp_path / "kernels"
    threads = torch.get_num_threads()
    try:
        assert main(["kernels", "bench", "--device", "cpu", "--ops", "entropy_fusion", "--quick", "--threads", "1",
                     "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    with open(out / "entropy_fusion_cpu.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["mode"], r["provider"]) for r in rows} == {(m, p) for m in ("fwd", "fwd+bwd") for p in ("eager", "cpp")}
    assert all(float(r["ms_p50"]) > 0 and float(r["GBps"]) > 0 for r in rows)
    run = json.loads((out / "run_cpu.json").read_text())
    assert run["command"] == f"ctrbench kernels bench --device cpu --ops entropy_fusion --quick --threads 1 --out {out}"
    assert run["machine"]["torch_threads"] == 1 and all(r["threads"] == "1" for r in rows)
    readme = (out / "README.md").read_text()
    assert run["command"] in readme and run["machine"]["cpu"] in readme and "torch threads" in readme
    assert "### entropy_fusion" in readme and "| mode | provider | ms_p50 |" in readme
    assert sum(line.startswith("| fwd") for line in readme.splitlines()) == 4  # 2 modes x 2 providers

