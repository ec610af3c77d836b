"""Smoke test of benchmarks/bench_cpu_kernels.py: it trains both ways and prints its table."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_cpu_kernels.py"


def test_bench_cpu_kernels_prints_both_settings(capsys) -> None:
    spec = importlib.util.spec_from_file_location("bench_cpu_kernels", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["-n", "2", "--epochs", "1", "--dataset", "digits"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) == 2, out
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        val_kernels, val_torch = (float(v) for v in cells[4].split(" / "))
        assert 0.3 < val_kernels <= 1 and abs(val_kernels - val_torch) <= 0.02, row
    assert re.search(r"total training: [\d.]+ s with the kernels, [\d.]+ s without", out)
