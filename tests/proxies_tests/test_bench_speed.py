"""Smoke test of benchmarks/bench_speed.py: it runs and prints its two tables (not its speed)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_speed.py"


@pytest.fixture(scope="module")
def bench_speed():
    spec = importlib.util.spec_from_file_location("bench_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_speed"] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["bench_speed"]


def _table_rows(text: str, header_start: str) -> list[list[str]]:
    """Cells of the data rows of the Markdown table whose header starts with `header_start`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _number(cell: str) -> float:
    return float(re.sub(r"[,x%]", "", cell))


def test_quick_run_prints_both_tables(bench_speed, digits_cache, capsys):
    assert bench_speed.main(["--quick", "--threads", "1", "--cache-dir", str(digits_cache)]) == 0
    out = capsys.readouterr().out

    assert "torch threads 1" in out, out
    loader = _table_rows(out, "| batch | loader |")
    assert [(r[0], r[1]) for r in loader] == [("64", "ffcv, 1 workers"),
                                              ("64", "torch, 0 workers")], loader
    for row in loader:
        assert _number(row[2]) > 0 and _number(row[4]) > 0, row

    trainer = _table_rows(out, "| model |")
    assert [r[3] for r in trainer] == ["train_proxy (ffcv)",
                                      "timm-style (torch, 0 workers)"], trainer
    assert trainer[0][0] == trainer[1][0], "both trainers must run the same model"
    for row in trainer:
        images_per_s, wall_s, val_acc = (_number(c) for c in row[4:7])
        assert images_per_s > 0 and wall_s > 0 and 0 <= val_acc <= 1, row
