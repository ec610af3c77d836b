"""Proxy reduction: the narrower, shallower, lower-resolution model that is trained to rank a full
architecture (zero-cost proxies and export use it too)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from nas.models.arch import ArchSpec, ConvMixerSpec, MetaFormerSpec
from nas.models.mixers import MIXERS

__all__ = ["ProxySpec", "reduce_to_proxy", "proxy_metaformer", "proxy_stage", "round_width"]


@dataclass(frozen=True)
class ProxySpec:
    """How a full model is reduced to the proxy that is trained (recorded with every trial)."""

    width_mult: float = 0.25  # proxy width = width x this, rounded (8, or the head_dim)
    depth_mult: float = 0.5  # proxy depth = max(1, round(depth x this))
    resolution: int = 32  # proxy input side in pixels
    stem_stride: int = 2  # MetaFormer proxy stem stride (4, 2 or 1)
    patch_size: int = 2  # ConvMixer proxy patch size


def round_width(x: float, q: int) -> int:
    """max(q, q * floor(x / q + 0.5))."""
    return max(q, q * math.floor(x / q + 0.5))


def reduce_to_proxy(arch: ArchSpec, p: ProxySpec, num_classes: int, *,
                    increasing: bool = True) -> ArchSpec:
    """The reduced model that is trained: narrower, shallower, smaller input, adapted stem.
    ``increasing``: MetaFormer stage widths are made strictly increasing (see
    :func:`proxy_metaformer`)."""
    if isinstance(arch, ConvMixerSpec):
        return replace(arch, width=round_width(arch.width * p.width_mult, 8),
                       depth=max(1, math.floor(arch.depth * p.depth_mult + 0.5)),
                       patch_size=p.patch_size, img_size=p.resolution, num_classes=num_classes)
    return proxy_metaformer(arch, p, num_classes, increasing=increasing)


def proxy_stage(width: int, mixer: str, args: dict[str, Any],
                 p: ProxySpec) -> tuple[int, dict[str, Any], int]:
    """A stage's proxy width (before the strictly-increasing adjustment), mixer settings and
    width quantum: multiples of 8, or of the scaled width setting (``head_dim``) of mixers with a
    width rule."""
    args, q = dict(args), 8
    key = MIXERS.get(mixer).width_multiple_of
    if key and key in args:
        args[key] = max(8, round_width(args[key] * p.width_mult, 8))
        q = math.lcm(8, args[key])
    return round_width(width * p.width_mult, q), args, q


def proxy_metaformer(arch: MetaFormerSpec, p: ProxySpec, num_classes: int, *,
                     increasing: bool = True) -> MetaFormerSpec:
    """Scale widths (multiples of 8, of the scaled head_dim in attention stages), depths and
    head_dim; keep mixers, norms and activations. Consecutive widths must differ (timm skips
    the downsampling between equal ones). With ``increasing`` (a space whose widths never
    shrink, the default) a stage's proxy width is raised above the stage before it where
    rounding made it equal or smaller; without it (``nondecreasing_widths: false``) each stage
    keeps its own scaled width, so shrinking full widths shrink in the proxy too, and only one
    that rounding made equal to the stage before it moves one quantum the way the full widths
    go (up where that would leave no channels)."""
    stages, prev, prev_full = [], 0, 0
    for s in arch.stages:
        width, args, q = proxy_stage(s.width, s.mixer, s.args, p)
        if not increasing and width == prev:  # (prev is then a multiple of q)
            width = prev - q if s.width < prev_full and prev > q else prev + q
        elif increasing and width <= prev:
            width = (prev // q + 1) * q
        depth = max(1, math.floor(s.depth * p.depth_mult + 0.5))
        stages.append(replace(s, width=width, depth=depth, mixer_args=tuple(args.items())))
        prev, prev_full = width, s.width
    return replace(arch, stages=tuple(stages), img_size=p.resolution, stem_stride=p.stem_stride,
                   num_classes=num_classes)
