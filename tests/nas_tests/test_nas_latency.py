"""measure_latency: a positive median and a context that says how it was measured."""

from __future__ import annotations

import pytest
import torch

from nas.models.cost import LatencyResult, measure_latency
from nas.models.model import build_model
from nas.models.presets import get_preset

CONTEXT_KEYS = {"device", "torch", "batch", "dtype", "threads"}


def _check(result: LatencyResult, batch: int, reps: int) -> None:
    assert isinstance(result, LatencyResult), f"expected LatencyResult, got {type(result)}"
    assert result.median_ms > 0, f"expected a positive median, got {result.median_ms}"
    assert result.iqr_ms >= 0, f"expected a non-negative IQR, got {result.iqr_ms}"
    assert result.reps == reps, f"expected {reps} reps, got {result.reps}"
    missing = CONTEXT_KEYS - set(result.context)
    assert not missing, f"context lacks {sorted(missing)}: {result.context}"
    ctx = result.context
    assert ctx["torch"] == torch.__version__, f"expected torch {torch.__version__}, got {ctx}"
    assert ctx["batch"] == batch, f"expected batch {batch}, got {ctx['batch']}"
    assert ctx["dtype"] == "float32", f"expected dtype float32, got {ctx['dtype']}"
    assert ctx["threads"] == torch.get_num_threads() >= 1, f"threads: {ctx['threads']}"
    assert isinstance(ctx["device"], str) and ctx["device"], f"device: {ctx['device']!r}"


@pytest.mark.parametrize("name", ["test_metaformer_tiny", "test_convmixer_tiny"])
@pytest.mark.parametrize("batch", [1, 2])
def test_measure_latency_on_tiny_presets(name: str, batch: int) -> None:
    result = measure_latency(get_preset(name), batch=batch, warmup=1, reps=3)
    _check(result, batch, reps=3)
    assert result.context["img_size"] == get_preset(name).img_size, result.context


def test_measure_latency_on_a_module() -> None:
    model = build_model(get_preset("test_convmixer_tiny"))
    result = measure_latency(model, warmup=0, reps=2, img_size=32)
    _check(result, batch=1, reps=2)


def test_measure_latency_fixed_threads_is_recorded_and_restorable() -> None:
    before = torch.get_num_threads()
    try:
        result = measure_latency(get_preset("test_convmixer_tiny"), threads=1, warmup=0, reps=2)
        assert result.context["threads"] == 1, f"expected threads 1, got {result.context}"
    finally:
        torch.set_num_threads(before)


def test_measure_latency_respects_in_chans() -> None:
    spec = get_preset("test_metaformer_tiny", in_chans=1)
    result = measure_latency(spec, warmup=0, reps=2)
    _check(result, batch=1, reps=2)
