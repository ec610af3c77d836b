"""Build an ``nn.Module`` from an architecture spec, on timm's MetaFormer building blocks.

The modules themselves are in ``portable.py`` (torch and timm only; an export ships its
source); this module validates specs and builds them with the registries' mixers, norms and
activations. Module names mirror ``timm.models.metaformer.MetaFormer`` (``stem``,
``stages.i.downsample``, ``stages.i.blocks.j.{norm1,token_mixer,layer_scale1,res_scale1,norm2,
mlp,...}``, ``head``), so a preset's state dict loads into timm's model and back. Unlike timm,
every stage may have its own mixer settings, norm, activation and MLP ratio, and bad
configurations fail before any tensor is allocated, with the field and the allowed values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from nas.models import portable
from nas.models.arch import (
    HEADS,
    STEM_STRIDES,
    STEMS,
    ArchSpec,
    ConvMixerSpec,
    MetaFormerSpec,
    StageSpec,
    from_dict,
    stage_grids,
    to_dict,
)
from nas.models.layers import ACTS, NORMS, build_norm
from nas.models.mixers import MIXERS
from nas_errors import ConfigError, did_you_mean

__all__ = ["validate", "build_model", "with_overrides", "runtime_config", "MetaFormerNet",
           "Block", "RegistryLayers"]


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


def runtime_config(spec: ArchSpec) -> dict[str, Any]:
    """What ``portable.build`` takes: ``to_dict(spec)`` with every mixer's settings filled in
    from the registry's defaults (an exported ``model.py`` holds exactly this)."""
    config = to_dict(spec)
    for stage in config.get("stages", ()):
        stage["mixer_args"] = MIXERS.get(stage["mixer"]).resolve(stage["mixer_args"])
    return config


class RegistryLayers(portable.Layers):
    """The names in a config, as the registries define them (built-ins come from portable.py,
    so a model built here and one built by an exported model.py are the same modules)."""

    def layout(self, mixer: str) -> str:
        return MIXERS.get(mixer).layout

    def mixer(self, name: str, dim: int, grid: tuple[int, int],
              settings: Mapping[str, Any]) -> nn.Module:
        mixer = MIXERS.get(name)
        return mixer.build(dim, grid, **mixer.resolve(dict(settings)))

    def norm(self, name: str, dim: int, layout: str) -> nn.Module:
        return build_norm(name, dim, layout)

    def act(self, name: str) -> Callable[[], nn.Module]:
        return ACTS.get(name).factory


REGISTRY_LAYERS = RegistryLayers()
Stem, Stage = portable.Stem, portable.Stage


class Block(portable.Block):
    """MetaFormer block (``portable.Block``) built from a :class:`StageSpec`."""

    def __init__(self, stage: StageSpec, grid: tuple[int, int], layout: str, drop_path: float,
                 mlp_bias: bool) -> None:
        config = {**dataclasses.asdict(stage), "mixer_args": stage.args}
        super().__init__(config, grid, layout, drop_path, mlp_bias, REGISTRY_LAYERS)


class MetaFormerNet(portable.MetaFormerNet):
    """Hierarchical MetaFormer built from a :class:`MetaFormerSpec` (``portable.MetaFormerNet``
    with the registries: timm-compatible names)."""

    def __init__(self, spec: MetaFormerSpec, drop_path_rate: float = 0.0, drop_rate: float = 0.0):
        validate(spec)
        super().__init__(runtime_config(spec), drop_path_rate, drop_rate, REGISTRY_LAYERS)
        self.spec = spec


def build_model(spec: ArchSpec | Mapping[str, Any], *, num_classes: int | None = None,
                img_size: int | None = None, drop_path_rate: float = 0.0, drop_rate: float = 0.0,
                device: str | torch.device | None = None) -> nn.Module:
    """Validate an architecture and build it, freshly initialised.

    Args:
        spec: an :class:`ArchSpec`, or its dict form (``to_dict``; e.g. an export's
            ``config.yaml`` as loaded by ``yaml.safe_load``).
        num_classes: replaces the architecture's classifier outputs.
        img_size: replaces its input side (grids, RandFormer's matrices and costs follow it).
        drop_path_rate: stochastic depth, linearly increasing over the blocks.
        drop_rate: dropout before the classifier.
        device: where to allocate; ``"meta"`` allocates no weights (for counting).

    Returns:
        The ``nn.Module`` (MetaFormer: ``MetaFormerNet``; ConvMixer: timm's ``ConvMixer``).

    Example:
        >>> model = build_model(get_preset("identityformer_s12"), num_classes=10, img_size=64)
    """
    spec = with_overrides(spec, num_classes=num_classes, img_size=img_size)
    with torch.device(device) if device is not None else nullcontext():
        if isinstance(spec, ConvMixerSpec):
            return portable.build(to_dict(spec), drop_rate=drop_rate, layers=REGISTRY_LAYERS)
        return MetaFormerNet(spec, drop_path_rate=drop_path_rate, drop_rate=drop_rate)


def with_overrides(spec: ArchSpec | Mapping[str, Any], *, num_classes: int | None = None,
                   img_size: int | None = None) -> ArchSpec:
    """``spec`` (or its dict form) with ``num_classes`` / ``img_size`` replaced, validated."""
    if isinstance(spec, Mapping):
        spec = from_dict(spec)
    elif not isinstance(spec, (MetaFormerSpec, ConvMixerSpec)):
        raise ConfigError(f"expected an architecture (MetaFormerSpec, ConvMixerSpec or its dict "
                          f"form); got {type(spec).__name__}")
    changes = {k: v for k, v in (("num_classes", num_classes), ("img_size", img_size))
               if v is not None}
    return validate(dataclasses.replace(spec, **changes) if changes else spec)
