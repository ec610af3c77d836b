"""Smoke test of benchmarks/bench_checkpoint.py: it times the saves and checks the resumes."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_checkpoint.py"


def test_bench_checkpoint_times_saves_and_resumes_exactly(capsys) -> None:
    spec = importlib.util.spec_from_file_location("bench_checkpoint", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["-n", "2", "--epochs", "2", "--dataset", "digits",
                        "--space", "tiny"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) == 2 and all("| yes (val" in row for row in rows), out
    assert re.search(r"saves: [\d.]+ s over [\d.]+ s of training \([\d.]+%\); resumed runs "
                     r"equal to the unbroken ones: 2 of 2", out), out
