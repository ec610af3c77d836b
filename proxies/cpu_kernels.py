"""Faster CPU training for proxy models: same parameters, same results up to float rounding.

A search on CPU trains its proxies one torch thread per trial. Profiled over 12 random
``hybrid_conv_attn`` proxies (batch 64, one thread), two things cost more than they should:

* PyTorch's depthwise convolution backward: 14% of a training step, about 10x the forward
  convolution's time, nearly all of it the weight gradient (28 ms for a 7x7 kernel over
  32 channels at 16x16 in channels-first layout, 6.5 ms in channels-last; a 7x7 kernel on a
  2x2 grid even took 12 ms *forward* in channels-first, 0.06 ms in channels-last);
* StarReLU, ``s * relu(x) ** 2 + b``: four element-wise passes forward and more backward.

:func:`speed_up` therefore puts the model in channels-last memory format (the trainer feeds
channels-last batches) and swaps the class of

* each stride-1, "same"-padded depthwise ``nn.Conv2d`` for :class:`DepthwiseConv2dNHWC`: the
  same ``conv2d`` forward; backward, the input gradient as a convolution with the flipped
  kernel and the weight gradient by a numba kernel that runs over the channels innermost
  (vectorised; at least 4x as fast as PyTorch's channels-last one for 5x5 and 7x7 kernels at
  these sizes). 3x3 kernels use it only on grids up to 4x4, where it is faster too; on larger
  grids PyTorch's channels-last kernel is faster (0.18 against 0.45 ms at 32 channels, 16x16);
* each timm ``StarReLU`` for :class:`StarReLUFused`: one pass forward, one backward.

Nothing else changes: the swapped modules keep their parameters, buffers, state-dict keys and
type (subclasses of ``nn.Conv2d`` and ``StarReLU``), so a trained proxy saves, copies and
exports as before; on CUDA and in other dtypes they run PyTorch's own code (and so does a
depthwise convolution evaluated without gradients).
The results equal PyTorch's up to float rounding (``tests/proxies_tests/test_cpu_kernels.py``
compares every mixer, norm and activation). Measured effect on training time:
``benchmarks/bench_cpu_kernels.py``, figures in the README ("Loader and trainer speed").
The numba kernels compile once (about 1 s) and are cached next to this file.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit
from timm.models.metaformer import StarReLU
from torch import nn

_CL = torch.channels_last


def _jit(fn):
    """numba-compile ``fn``, cached on disk (next to this file, else numba's user-wide cache
    directory); without any writable cache location, compiled in each process instead."""
    options = dict(fastmath=True, boundscheck=False, nogil=True)
    try:
        return njit(cache=True, **options)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return njit(cache=False, **options)(fn)


@_jit
def _dw_weight_grad(x: np.ndarray, gy: np.ndarray, k: int, pad: int) -> np.ndarray:
    """d loss / d weight of a stride-1 depthwise convolution, as (k, k, C).

    x, gy: (N, H, W, C) float32 C-contiguous (the input and the output gradient, same size:
    stride 1, "same" padding ``pad`` = k // 2).
    """
    n_img, height, width, chans = gy.shape
    out = np.zeros((k, k, chans), np.float32)
    for n in range(n_img):
        for h in range(height):
            for i in range(k):
                hh = h + i - pad
                if hh < 0 or hh >= height:
                    continue
                for w in range(width):
                    g = gy[n, h, w]
                    for j in range(k):
                        ww = w + j - pad
                        if ww < 0 or ww >= width:
                            continue
                        xr = x[n, hh, ww]
                        acc = out[i, j]
                        for c in range(chans):
                            acc[c] += g[c] * xr[c]
    return out


class _DepthwiseFn(torch.autograd.Function):
    """Stride-1, "same"-padded depthwise convolution with a fast CPU backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                pad: int) -> torch.Tensor:
        x = x.contiguous(memory_format=_CL)
        ctx.save_for_backward(x, weight)
        ctx.pad = pad
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, padding=pad, groups=weight.shape[0])

    @staticmethod
    def backward(ctx, gy: torch.Tensor):
        x, weight = ctx.saved_tensors
        pad, k = ctx.pad, weight.shape[-1]
        gy = gy.contiguous(memory_format=_CL)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:  # the transposed convolution of a stride-1 "same" conv
            gx = F.conv2d(gy, weight.flip(-1, -2), padding=pad, groups=weight.shape[0])
        if ctx.needs_input_grad[1] and (k >= 5 or gy.shape[-2] * gy.shape[-1] <= 16):
            g = _dw_weight_grad(x.detach().permute(0, 2, 3, 1).numpy(),
                                gy.permute(0, 2, 3, 1).numpy(), k, pad)
            gw = torch.from_numpy(g).permute(2, 0, 1).unsqueeze(1).contiguous()
        elif ctx.needs_input_grad[1]:  # 3x3 on grids over 4x4: PyTorch's channels-last is faster
            gw = torch.ops.aten.convolution_backward(
                gy, x, weight, None, [1, 1], [pad, pad], [1, 1], False, [0, 0],
                weight.shape[0], [False, True, False])[1]
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = gy.sum(dim=(0, 2, 3))
        return gx, gw, gb, None


class DepthwiseConv2dNHWC(nn.Conv2d):
    """An ``nn.Conv2d`` (depthwise, stride 1, "same" padding) whose CPU float32 training uses
    :class:`_DepthwiseFn`; anything else (CUDA, other dtypes, no grad) runs ``nn.Conv2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and x.dtype == torch.float32
                and self.weight.dtype == torch.float32 and torch.is_grad_enabled()
                and self.weight.requires_grad):
            return _DepthwiseFn.apply(x, self.weight, self.bias, self.kernel_size[0] // 2)
        return super().forward(x)


@_jit
def _star_relu_forward(x: np.ndarray, y: np.ndarray, scale: float, bias: float) -> None:
    """y = scale * relu(x) ** 2 + bias, element by element (1-D float32 arrays)."""
    zero = np.float32(0.0)
    for i in range(x.size):
        r = max(x[i], zero)
        y[i] = scale * r * r + bias


@_jit
def _star_relu_backward(x: np.ndarray, gy: np.ndarray, gx: np.ndarray,
                        scale: float) -> tuple[float, float]:
    """Writes d loss / d x into gx; returns d loss / d scale and d loss / d bias."""
    zero = np.float32(0.0)
    g_scale = 0.0  # float64 sums
    g_bias = 0.0
    for i in range(x.size):
        r = max(x[i], zero)
        g = gy[i]
        gx[i] = 2.0 * scale * r * g
        g_scale += g * r * r
        g_bias += g
    return g_scale, g_bias


def _dense_like(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` with the strides of the dense tensor ``like`` (so their elements pair up in
    memory order)."""
    return t if t.stride() == like.stride() else torch.empty_like(like).copy_(t)


def _flat(t: torch.Tensor) -> np.ndarray:
    """The elements of a dense tensor in memory order, as a 1-D numpy view."""
    return t.detach().as_strided((t.numel(),), (1,)).numpy()


class _StarReLUFn(torch.autograd.Function):
    """``scale * relu(x) ** 2 + bias`` in one pass forward and one backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        if not (x.is_contiguous() or x.is_contiguous(memory_format=_CL)):
            x = x.contiguous()
        ctx.save_for_backward(x, scale)
        y = torch.empty_like(x)  # x's layout
        _star_relu_forward(_flat(x), _flat(y), np.float32(scale.item()),
                           np.float32(bias.item()))
        return y

    @staticmethod
    def backward(ctx, gy: torch.Tensor):
        x, scale = ctx.saved_tensors
        gy = _dense_like(gy, x)
        gx = torch.empty_like(x)
        g_scale, g_bias = _star_relu_backward(_flat(x), _flat(gy), _flat(gx),
                                              np.float32(scale.item()))
        return (gx, torch.full_like(scale, g_scale), torch.full_like(scale, g_bias))


class StarReLUFused(StarReLU):
    """timm's ``StarReLU`` computed by :class:`_StarReLUFn` for CPU float32 tensors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.dtype == torch.float32 and not self.inplace:
            return _StarReLUFn.apply(x, self.scale, self.bias)
        return super().forward(x)


def _fast_depthwise(conv: nn.Module) -> bool:
    """Whether ``conv`` is a depthwise convolution :class:`DepthwiseConv2dNHWC` computes."""
    if type(conv) is not nn.Conv2d:
        return False
    k = conv.kernel_size
    same = (k[0] // 2, k[1] // 2)
    return (conv.groups == conv.in_channels == conv.out_channels and k[0] == k[1]
            and k[0] % 2 == 1 and conv.stride == (1, 1) and conv.dilation == (1, 1)
            and conv.padding_mode == "zeros" and conv.padding in (same, "same"))


def speed_up(model: nn.Module) -> int:
    """Prepare ``model`` (on CPU) for faster training, in place; returns how many modules
    (depthwise convolutions and StarReLUs) were swapped. Feed it channels-last batches
    (``make_loader(..., channels_last=True)``); other layouts work too, at a copy per depthwise
    layer."""
    model.to(memory_format=_CL)
    swapped = 0
    for module in model.modules():
        if _fast_depthwise(module):
            module.__class__ = DepthwiseConv2dNHWC
            swapped += 1
        elif type(module) is StarReLU:
            module.__class__ = StarReLUFused
            swapped += 1
    return swapped
