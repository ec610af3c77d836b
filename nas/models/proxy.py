"""Proxy reduction: the narrower, shallower, lower-resolution model that is trained to rank a full
architecture (zero-cost proxies and export use it too)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from nas.models.arch import ArchSpec, ConvMixerSpec, MetaFormerSpec
from nas.models.mixers import MIXERS

__all__ = ["ProxySpec", "reduce_to_proxy", "proxy_metaformer", "proxy_stage", "proxy_widths",
           "round_width"]


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


def reduce_to_proxy(arch: ArchSpec, p: ProxySpec, num_classes: int) -> ArchSpec:
    """The reduced model that is trained: narrower, shallower, smaller input, adapted stem."""
    if isinstance(arch, ConvMixerSpec):
        return replace(arch, width=round_width(arch.width * p.width_mult, 8),
                       depth=max(1, math.floor(arch.depth * p.depth_mult + 0.5)),
                       patch_size=p.patch_size, img_size=p.resolution, num_classes=num_classes)
    return proxy_metaformer(arch, p, num_classes)


def proxy_stage(width: int, mixer: str, args: dict[str, Any],
                 p: ProxySpec) -> tuple[int, dict[str, Any], int]:
    """A stage's proxy width (before :func:`proxy_widths`' adjustment), mixer settings and
    width quantum: multiples of 8, or of the scaled width setting (``head_dim``) of mixers with a
    width rule."""
    args, q = dict(args), 8
    key = MIXERS.get(mixer).width_multiple_of
    if key and key in args:
        args[key] = max(8, round_width(args[key] * p.width_mult, 8))
        q = math.lcm(8, args[key])
    return round_width(width * p.width_mult, q), args, q


def proxy_widths(full: Sequence[int], scaled: Sequence[int], quanta: Sequence[int]
                 ) -> list[int]:
    """The proxy's stage widths from the full ones, each stage's scaled width and its quantum
    (:func:`proxy_stage`): every step between stages goes the way the full widths' step goes
    (timm skips the downsampling between equal widths, so none may stay equal). Where rounding
    made a step flat or turned it round, the stage's width becomes the next multiple of its
    quantum above the stage before it (full widths that grow: the only case in a space whose
    widths never shrink) or below it (widths that shrink, ``nondecreasing_widths: false``;
    above it only when no multiple of the quantum is left below)."""
    out: list[int] = []
    for i, (f, w, q) in enumerate(zip(full, scaled, quanta)):
        if i:
            prev, prev_full = out[-1], full[i - 1]
            if f >= prev_full and w <= prev:
                w = (prev // q + 1) * q
            elif f < prev_full and w >= prev:
                w = (prev - 1) // q * q
                if w < q:
                    w = (prev // q + 1) * q
        out.append(w)
    return out


def proxy_metaformer(arch: MetaFormerSpec, p: ProxySpec, num_classes: int) -> MetaFormerSpec:
    """Scale widths (multiples of 8, of the scaled head_dim in attention stages; their steps
    keep the full widths' directions: :func:`proxy_widths`), depths and head_dim; keep mixers,
    norms and activations."""
    scaled = [proxy_stage(s.width, s.mixer, s.args, p) for s in arch.stages]
    widths = proxy_widths([s.width for s in arch.stages], [w for w, _, _ in scaled],
                          [q for _, _, q in scaled])
    stages = tuple(replace(s, width=w, depth=max(1, math.floor(s.depth * p.depth_mult + 0.5)),
                           mixer_args=tuple(args.items()))
                   for s, w, (_, args, _) in zip(arch.stages, widths, scaled))
    return replace(arch, stages=stages, img_size=p.resolution, stem_stride=p.stem_stride,
                   num_classes=num_classes)
