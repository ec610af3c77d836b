"""Smoke test of benchmarks/bench_step.py: it times each batch size and prints its table."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_step.py"


def _module():
    spec = importlib.util.spec_from_file_location("bench_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_step_prints_one_row_per_model(capsys) -> None:
    assert _module().main(["-n", "2", "--batches", "8", "1", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) == 2, out
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        at8, at1 = float(cells[2]), float(cells[3])
        assert 0 < at1 and 0 < at8, row  # (their order is the machine's business)
        assert cells[4].endswith("%") and float(cells[6]) > 0, row
    assert re.search(r"^median: fixed share \d+%", out, flags=re.M), out


def test_bench_step_needs_two_batch_sizes(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        _module().main(["--batches", "8"])
    assert e.value.code == 2
    assert "--batches needs two or more sizes >= 1" in capsys.readouterr().err
