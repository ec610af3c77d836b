"""Cost model: params, MACs and activations, counted two ways that must agree exactly.

Convention (as in the MetaFormer papers): MACs = FLOPs / 2, counting convolutions, matrix
products and attention's two products; norms, activations, pooling and additions count 0. Acts
are the output elements of those same operations (pycls), with attention in its math form (the
N x N score matrix included). All figures are for one image at the spec's ``img_size``.

- :func:`traced_cost` builds the model on the meta device (no weights allocated) and runs
  ``FlopCounterMode`` plus an output-size counter over one forward.
- :func:`analytic_cost` computes the same numbers in closed form from the spec alone.
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from nas.models.arch import ArchSpec, ConvMixerSpec, MetaFormerSpec, stage_grids, stem_geometry
from nas.models.layers import ACTS, NORMS
from nas.models.mixers import MIXERS
from nas.models.model import build_model, validate

__all__ = ["Cost", "analytic_cost", "traced_cost", "LatencyResult", "measure_latency"]


@dataclass(frozen=True)
class Cost:
    params: int  # learnable + frozen parameters (RandFormer's matrices included)
    macs: int  # multiply-accumulates for one image (FLOPs / 2)
    acts: int  # output elements of the counted operations for one image

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.params + other.params, self.macs + other.macs, self.acts + other.acts)

    def times(self, k: int) -> Cost:
        return Cost(self.params * k, self.macs * k, self.acts * k)



# --------------------------------------------------------------------------- analytic


def analytic_cost(spec: ArchSpec) -> Cost:
    """Closed-form params/MACs/acts from the spec alone (validates it first)."""
    validate(spec)
    if isinstance(spec, ConvMixerSpec):
        return _convmixer_cost(spec)
    return _metaformer_cost(spec)


def _metaformer_cost(spec: MetaFormerSpec) -> Cost:
    v2, grids = spec.stem == "v2", stage_grids(spec)
    ln_nobias = NORMS.get("ln_nobias").params_per_channel
    k = stem_geometry(spec.stem_stride)[0]
    c1, n1 = spec.stages[0].width, grids[0][0] * grids[0][1]
    total = Cost(k * k * spec.in_chans * c1 + c1 + (ln_nobias * c1 if v2 else 0),
                 k * k * spec.in_chans * c1 * n1, c1 * n1)
    prev = c1
    for i, (stage, grid) in enumerate(zip(spec.stages, grids)):
        c, n = stage.width, grid[0] * grid[1]
        if i:  # downsampling: [pre-norm] conv k3 s2 p1 with bias
            total += Cost((ln_nobias * prev if v2 else 0) + 9 * prev * c + c, 9 * prev * c * n,
                          c * n)
        total += _block_cost(stage, grid, spec.mlp_bias).times(stage.depth)
        prev = c
    return total + _head_cost(prev, spec.num_classes, spec.head)


def _block_cost(stage, grid: tuple[int, int], mlp_bias: bool) -> Cost:
    c, n = stage.width, grid[0] * grid[1]
    mixer = MIXERS.get(stage.mixer)
    mp, mm, ma = mixer.cost(c, grid, **mixer.resolve(stage.args))
    hid = int(stage.mlp_ratio * c)
    mlp = Cost(2 * c * hid + (hid + c if mlp_bias else 0) + ACTS.get(stage.act).params,
               2 * c * hid * n, (hid + c) * n)
    scales = 2 * c * ((stage.layer_scale is not None) + (stage.res_scale is not None))
    norms = 2 * c * NORMS.get(stage.norm).params_per_channel
    return Cost(mp + norms + scales, mm, ma) + mlp


def _head_cost(c: int, classes: int, head: str) -> Cost:
    out_norm = 2 * c  # LayerNorm2d with bias after global pooling
    if head == "linear":
        return Cost(out_norm + c * classes + classes, c * classes, classes)
    hid = 4 * c  # MlpHead: fc1, SquaredReLU, LayerNorm (with bias), fc2
    return Cost(out_norm + c * hid + hid + 2 * hid + hid * classes + classes,
                c * hid + hid * classes, hid + classes)


def _convmixer_cost(spec: ConvMixerSpec) -> Cost:
    h, p, k, d = spec.width, spec.patch_size, spec.kernel_size, spec.depth
    g = spec.img_size // p
    n, act = g * g, ACTS.get(spec.act).params
    stem = Cost(p * p * spec.in_chans * h + h + 2 * h + act, p * p * spec.in_chans * h * n, h * n)
    mixing = Cost(*MIXERS.get("convmixer").cost(h, (g, g), k, spec.act))  # depthwise, act, BN
    pointwise = Cost(h * h + h + 2 * h + act, h * h * n, h * n)  # 1x1 conv, act, BN
    layer = mixing + pointwise
    head = Cost(h * spec.num_classes + spec.num_classes, h * spec.num_classes, spec.num_classes)
    return stem + layer.times(d) + head


# --------------------------------------------------------------------------- traced

_aten = torch.ops.aten
_COUNTED = {
    _aten.convolution, _aten.mm, _aten.addmm, _aten.bmm, _aten.baddbmm,
    _aten._scaled_dot_product_efficient_attention, _aten._scaled_dot_product_flash_attention,
    _aten._scaled_dot_product_cudnn_attention,
}


class _OutputCounter(TorchDispatchMode):
    """Sums the output elements of convolutions and matrix products."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket in _COUNTED:
            first = out[0] if isinstance(out, (tuple, list)) else out
            self.total += first.numel()
        return out


def traced_cost(spec: ArchSpec) -> Cost:
    """Build on the meta device and count one batch-1 forward (checks the output shape too)."""
    model = build_model(spec, device="meta").eval()
    params = sum(p.numel() for p in model.parameters())
    x = torch.empty(1, spec.in_chans, spec.img_size, spec.img_size, device="meta")
    acts = _OutputCounter()
    with torch.no_grad(), FlopCounterMode(display=False) as flops, acts:
        out = model(x)
    if tuple(out.shape) != (1, spec.num_classes):
        raise AssertionError(f"model output {tuple(out.shape)} != (1, {spec.num_classes})")
    return Cost(params, flops.get_total_flops() // 2, acts.total)


# --------------------------------------------------------------------------- latency


@dataclass(frozen=True)
class LatencyResult:
    median_ms: float  # median over `reps` timed forwards
    iqr_ms: float  # inter-quartile range of the same
    reps: int
    context: dict[str, Any] = field(default_factory=dict)  # device, torch, batch, dtype, ...


def measure_latency(spec_or_model: ArchSpec | torch.nn.Module, *, batch: int = 1,
                    device: str = "cpu", dtype: torch.dtype = torch.float32,
                    threads: int | None = None, warmup: int = 10, reps: int = 30,
                    channels_last: bool = False, img_size: int | None = None) -> LatencyResult:
    """Forward latency with warm-up, synchronisation, fixed threads, median of ``reps``."""
    if threads is not None:
        torch.set_num_threads(threads)
    if isinstance(spec_or_model, torch.nn.Module):
        model = spec_or_model
        size = img_size or 224
        chans = getattr(getattr(model, "spec", None), "in_chans", 3)
    else:
        model, size = build_model(spec_or_model), img_size or spec_or_model.img_size
        chans = spec_or_model.in_chans
    dev = torch.device(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device=dev, dtype=dtype, memory_format=fmt).eval()
    x = torch.randn(batch, chans, size, size, device=dev, dtype=dtype).to(memory_format=fmt)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        for i in range(warmup + reps):
            sync()
            t0 = time.perf_counter()
            model(x)
            sync()
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor()
    context = {"device": name or platform.machine(), "device_type": dev.type,
               "torch": torch.__version__, "batch": batch,
               "dtype": str(dtype).replace("torch.", ""),
               "threads": torch.get_num_threads(), "channels_last": channels_last,
               "img_size": size, "warmup": warmup}
    return LatencyResult(statistics.median(times), q[2] - q[0], reps, context)
