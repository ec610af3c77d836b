"""Smoke test of benchmarks/bench_gpu.py on the CPU: it trains each mode and prints one row per
model and mode (the CUDA run itself is in benchmarks/results/gpu_h200_bench.log)."""

from __future__ import annotations

import sys

import pytest
import torch

from tests.nas_tests._scripts import benchmark_module


@pytest.fixture(scope="module")
def bench_gpu():
    yield from benchmark_module("bench_gpu")
    sys.modules.pop("bench_speed", None)  # imported by bench_gpu from benchmarks/


def test_cpu_run_prints_a_row_per_model_and_mode(bench_gpu, digits_cache, capsys):
    assert bench_gpu.main(["--device", "cpu", "--dataset", "digits", "--cache-dir",
                           str(digits_cache), "--models", "1", "--epochs", "1", "--repeats", "1",
                           "--threads", "1", "--modes", "fp32", "cl"]) == 0
    out = capsys.readouterr().out
    rows = [ln.split() for ln in out.splitlines() if ln.endswith(tuple("0123456789"))
            and (" fp32 " in ln or " cl " in ln)]
    assert [r[-6] for r in rows] == ["fp32", "cl"], out
    for r in rows:
        ms_step, img_s, wall_s, acc = float(r[-5]), float(r[-4]), float(r[-2]), float(r[-1])
        assert ms_step > 0 and img_s > 0 and wall_s > 0 and 0 <= acc <= 1, r
    assert "step-time speed-up over fp32" in out and "fp32 1.00x" in out, out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_cuda_without_a_gpu_is_a_one_line_error(bench_gpu):
    with pytest.raises(SystemExit, match="torch sees no CUDA device"):
        bench_gpu.main(["--device", "cuda"])
