"""Build an ``nn.Module`` from an architecture spec, on timm's MetaFormer building blocks.

Module names mirror ``timm.models.metaformer.MetaFormer`` (``stem``, ``stages.i.downsample``,
``stages.i.blocks.j.{norm1,token_mixer,layer_scale1,res_scale1,norm2,mlp,...}``, ``head``), so a
preset's state dict loads into timm's model and back. Unlike timm, every stage may have its own
mixer settings, norm, activation and MLP ratio, and bad configurations fail before any tensor
is allocated, with the field and the allowed values.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import nullcontext

import torch
from timm.layers import DropPath, LayerNorm2d, Mlp, SelectAdaptivePool2d, trunc_normal_
from timm.models.convmixer import ConvMixer
from timm.models.metaformer import Downsampling, MlpHead, Scale
from torch import nn

from nas.models.arch import (
    HEADS,
    STEM_STRIDES,
    STEMS,
    ArchSpec,
    ConvMixerSpec,
    MetaFormerSpec,
    StageSpec,
    stage_grids,
    stem_geometry,
)
from nas.models.layers import ACTS, NORMS, build_act, build_norm
from nas.models.mixers import MIXERS
from nas_errors import ConfigError, did_you_mean

__all__ = ["validate", "build_model", "MetaFormerNet"]


# --------------------------------------------------------------------------- validation


def _int_at_least(where: str, value: object, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{where} must be an integer >= {low}; got {value!r}")


def _one_of(where: str, value: object, allowed) -> None:
    if value not in allowed:
        allowed = list(allowed)
        names = ", ".join(str(a) for a in allowed)
        raise ConfigError(f"{where} must be one of {names}; got {value!r}"
                          f"{did_you_mean(value, allowed)}")


def _check_scale(where: str, value: object) -> None:
    if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        raise ConfigError(f"{where} must be a number or null (off); got {value!r}")


def validate(spec: ArchSpec) -> ArchSpec:
    """Raise :class:`ConfigError` naming the first field that breaks a rule; return ``spec``."""
    if isinstance(spec, ConvMixerSpec):
        _validate_convmixer(spec)
        return spec
    if not isinstance(spec, MetaFormerSpec):
        raise ConfigError(f"expected a MetaFormerSpec or ConvMixerSpec; got {type(spec).__name__}")
    if not spec.stages:
        raise ConfigError("stages must list at least one stage")
    _one_of("stem", spec.stem, STEMS)
    _one_of("stem_stride", spec.stem_stride, STEM_STRIDES)
    _one_of("head", spec.head, HEADS)
    _int_at_least("num_classes", spec.num_classes, 1)
    _int_at_least("in_chans", spec.in_chans, 1)
    _int_at_least("img_size", spec.img_size, 1)
    grids = stage_grids(spec)
    for i, (stage, grid) in enumerate(zip(spec.stages, grids)):
        where = f"stages[{i}]"
        _int_at_least(f"{where}.depth", stage.depth, 1)
        _int_at_least(f"{where}.width", stage.width, 1)
        if grid[0] < 1:
            raise ConfigError(
                f"{where}: img_size {spec.img_size} leaves no pixels at stage {i + 1} "
                f"(grids {[g[0] for g in grids]}); use a larger img_size or fewer stages"
            )
        if i and stage.width == spec.stages[i - 1].width:
            raise ConfigError(
                f"{where}.width equals stages[{i - 1}].width ({stage.width}): consecutive widths "
                "must differ (timm would silently skip the downsampling and change every grid)"
            )
        _one_of(f"{where}.mixer", stage.mixer, MIXERS)
        mixer = MIXERS.get(stage.mixer)
        args = mixer.resolve(stage.args, f"{where}.mixer_args")
        try:
            mixer.check(stage.width, grid, **args)
        except ConfigError as e:  # the mixer's own check names its setting; add the stage
            raise ConfigError(f"{where}.mixer_args: {e}") from None
        _one_of(f"{where}.norm", stage.norm, NORMS)
        _one_of(f"{where}.act", stage.act, ACTS)
        if not isinstance(stage.mlp_ratio, (int, float)) or int(stage.mlp_ratio * stage.width) < 1:
            raise ConfigError(f"{where}.mlp_ratio must be > 0; got {stage.mlp_ratio!r}")
        _check_scale(f"{where}.layer_scale", stage.layer_scale)
        _check_scale(f"{where}.res_scale", stage.res_scale)
    return spec


def _validate_convmixer(spec: ConvMixerSpec) -> None:
    for name in ("width", "depth", "kernel_size", "patch_size", "num_classes", "in_chans"):
        _int_at_least(name, getattr(spec, name), 1)
    _one_of("act", spec.act, ACTS)
    if spec.img_size < spec.patch_size:
        raise ConfigError(f"img_size {spec.img_size} is smaller than patch_size {spec.patch_size}")


# --------------------------------------------------------------------------- modules


class Stem(nn.Module):
    """Stem conv (k7 s4 p2 in the papers) with an optional post-norm (v2)."""

    def __init__(self, in_chans: int, out_chans: int, stride: int, norm: bool) -> None:
        super().__init__()
        k, s, p = stem_geometry(stride)
        self.conv = nn.Conv2d(in_chans, out_chans, kernel_size=k, stride=s, padding=p)
        self.norm = NORMS.get("ln_nobias").nchw(out_chans) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class Block(nn.Module):
    """MetaFormer block: x = r1*x + s1*mixer(norm1(x)); x = r2*x + s2*mlp(norm2(x))."""

    def __init__(self, stage: StageSpec, grid: tuple[int, int], layout: str, drop_path: float,
                 mlp_bias: bool) -> None:
        super().__init__()
        dim, nchw = stage.width, layout == "nchw"
        mixer = MIXERS.get(stage.mixer)
        self.norm1 = build_norm(stage.norm, dim, layout)
        self.token_mixer = mixer.build(dim, grid, **mixer.resolve(stage.args))
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.layer_scale1 = _scale(dim, stage.layer_scale, nchw)
        self.res_scale1 = _scale(dim, stage.res_scale, nchw)
        self.norm2 = build_norm(stage.norm, dim, layout)
        self.mlp = Mlp(dim, int(stage.mlp_ratio * dim), act_layer=lambda: build_act(stage.act),
                       bias=mlp_bias, use_conv=nchw)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.layer_scale2 = _scale(dim, stage.layer_scale, nchw)
        self.res_scale2 = _scale(dim, stage.res_scale, nchw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = self.token_mixer(self.norm1(x))
        x = self.res_scale1(x) + self.layer_scale1(self.drop_path1(mixed))
        return self.res_scale2(x) + self.layer_scale2(self.drop_path2(self.mlp(self.norm2(x))))


def _scale(dim: int, init: float | None, nchw: bool) -> nn.Module:
    return nn.Identity() if init is None else Scale(dim, init_value=init, use_nchw=nchw)


class Stage(nn.Module):
    """Optional downsampling (k3 s2 p1), then blocks; attention-like mixers see (B, N, C)."""

    def __init__(self, in_chans: int, stage: StageSpec, grid: tuple[int, int], first: bool,
                 pre_norm: bool, dp_rates: list[float], mlp_bias: bool) -> None:
        super().__init__()
        layout = MIXERS.get(stage.mixer).layout
        self.use_nchw = layout == "nchw"
        self.downsample = nn.Identity() if first else Downsampling(
            in_chans, stage.width, kernel_size=3, stride=2, padding=1,
            norm_layer=NORMS.get("ln_nobias").nchw if pre_norm else None,
        )
        self.blocks = nn.Sequential(*[
            Block(stage, grid, layout, dp_rates[j], mlp_bias) for j in range(stage.depth)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        b, c, h, w = x.shape
        if not self.use_nchw:
            x = x.reshape(b, c, h * w).transpose(1, 2)
        x = self.blocks(x)
        if not self.use_nchw:
            x = x.transpose(1, 2).reshape(b, c, h, w)
        return x


class MetaFormerNet(nn.Module):
    """Hierarchical MetaFormer built from a :class:`MetaFormerSpec` (timm-compatible names)."""

    def __init__(self, spec: MetaFormerSpec, drop_path_rate: float = 0.0, drop_rate: float = 0.0):
        super().__init__()
        validate(spec)
        self.spec = spec
        self.num_classes = spec.num_classes
        self.num_features = spec.stages[-1].width
        v2 = spec.stem == "v2"
        self.stem = Stem(spec.in_chans, spec.stages[0].width, spec.stem_stride, norm=v2)
        total = sum(spec.depths)
        rates = [drop_path_rate * j / max(total - 1, 1) for j in range(total)]
        stages, prev, start = [], spec.stages[0].width, 0
        for i, (stage, grid) in enumerate(zip(spec.stages, stage_grids(spec))):
            dp = rates[start:start + stage.depth]
            stages.append(Stage(prev, stage, grid, i == 0, v2, dp, spec.mlp_bias))
            prev, start = stage.width, start + stage.depth
        self.stages = nn.Sequential(*stages)
        c = self.num_features
        fc = MlpHead(c, spec.num_classes) if spec.head == "mlp" else nn.Linear(c, spec.num_classes)
        self.head = nn.Sequential(OrderedDict([
            ("global_pool", SelectAdaptivePool2d(pool_type="avg")),
            ("norm", LayerNorm2d(c)),
            ("flatten", nn.Flatten(1)),
            ("drop", nn.Dropout(drop_rate)),
            ("fc", fc),
        ]))
        self.apply(_init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def build_model(spec: ArchSpec, *, drop_path_rate: float = 0.0, drop_rate: float = 0.0,
                device: str | torch.device | None = None) -> nn.Module:
    """Validate ``spec`` and build it; ``device="meta"`` allocates no weights (for counting)."""
    validate(spec)
    with torch.device(device) if device is not None else nullcontext():
        if isinstance(spec, ConvMixerSpec):
            act = type(build_act(spec.act))
            return ConvMixer(spec.width, spec.depth, kernel_size=spec.kernel_size,
                             patch_size=spec.patch_size, in_chans=spec.in_chans,
                             num_classes=spec.num_classes, drop_rate=drop_rate, act_layer=act)
        return MetaFormerNet(spec, drop_path_rate=drop_path_rate, drop_rate=drop_rate)
