"""Named architectures: the published MetaFormer / ConvMixer models as :class:`ArchSpec` values.

Every preset is a function registered timm-style (``@register_preset``) that returns a frozen
spec; ``get_preset(name, **overrides)`` looks one up and replaces top-level fields, e.g.
``get_preset("caformer_s18", num_classes=10, img_size=32, stem_stride=2)``.

Depths, widths and per-family settings follow ``metaformer.md`` §4 and timm 1.0.31
(``timm/models/metaformer.py``, ``convmixer.py``); presets that timm also has are listed in
:data:`TIMM_NAMES` and share its state-dict layout, so timm's weights load into them.

- PoolFormer v1: v1 stem (no norms), GroupNorm1 with bias, GELU MLP with biases, LayerScale
  (1e-5 for s12/s24, 1e-6 for s36/m36/m48), no ResScale, linear head.
- PoolFormerV2 / IdentityFormer / RandFormer: v2 stem, GroupNorm1 without bias, StarReLU,
  ResScale 1.0 in stages 3-4, linear head.
- ConvFormer / CAFormer: v2 stem, LayerNorm without bias, StarReLU, ResScale 1.0 in stages 3-4,
  MLP head.
- ConvMixer: isotropic, GELU (ReLU for 768/32).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from nas.models._registry import Registry
from nas.models._timm import register_timm_preset
from nas.models.arch import ArchSpec, ConvMixerSpec, MetaFormerSpec, StageSpec
from nas.models.model import validate
from nas_errors import ConfigError, did_you_mean

__all__ = [
    "PRESETS",
    "TIMM_NAMES",
    "register_preset",
    "get_preset",
    "list_presets",
]

PresetFn = Callable[..., ArchSpec]

PRESETS: Registry[PresetFn] = Registry("preset")
TIMM_NAMES: dict[str, str] = {}  # our preset name -> timm model name (where timm has the model)

# width and depth sets (metaformer.md §4)
WIDTHS_S = (64, 128, 320, 512)
WIDTHS_M = (96, 192, 384, 768)
WIDTHS_M36_CONV = (96, 192, 384, 576)  # ConvFormer/CAFormer "m36"
WIDTHS_B = (128, 256, 512, 768)
DEPTHS_12 = (2, 2, 6, 2)
DEPTHS_24 = (4, 4, 12, 4)
DEPTHS_36 = (6, 6, 18, 6)  # v1/v2 s36, m36
DEPTHS_48 = (8, 8, 24, 8)
DEPTHS_18_CONV = (3, 3, 9, 3)  # ConvFormer/CAFormer s18
DEPTHS_36_CONV = (3, 12, 18, 3)  # ConvFormer/CAFormer s36, m36, b36
V2_RES_SCALE = (None, None, 1.0, 1.0)  # baselines: ResScale in stages 3-4 only


def register_preset(fn: PresetFn | None = None, *, timm: str | bool = False):
    """Register a preset function under its ``__name__`` (decorator, with or without arguments).

    ``timm=True`` records that timm has a model of the same name; a string names it explicitly.
    Any other preset is registered with timm under its name (``timm.create_model(name)``).
    """

    def deco(f: PresetFn) -> PresetFn:
        PRESETS.add(f.__name__, f)
        if timm:
            TIMM_NAMES[f.__name__] = f.__name__ if timm is True else str(timm)
        else:
            register_timm_preset(f.__name__)
        return f

    return deco(fn) if fn is not None else deco


def list_presets(pattern: str = "*") -> list[str]:
    """Sorted preset names matching a shell-style ``pattern`` (e.g. ``"caformer_*"``)."""
    return PRESETS.names(pattern)


def get_preset(name: str, **overrides: Any) -> ArchSpec:
    """The preset ``name`` with top-level fields replaced, validated.

    Unknown preset names, unknown fields and overrides that break a rule (e.g. an ``img_size``
    too small for the stages) raise :class:`ConfigError` naming the allowed values.
    """
    return validate(PRESETS.get(name)(**overrides))


def _override(spec: ArchSpec, overrides: dict[str, Any]) -> ArchSpec:
    if not overrides:
        return spec
    allowed = [f.name for f in dataclasses.fields(spec) if f.init]
    for key in overrides:
        if key not in allowed:
            raise ConfigError(
                f"preset override '{key}' is not a {type(spec).__name__} field; allowed: "
                f"{', '.join(allowed)}{did_you_mean(key, allowed)}"
            )
    if "stages" in overrides:
        overrides = {**overrides, "stages": tuple(overrides["stages"])}
    return dataclasses.replace(spec, **overrides)


def _metaformer(
    depths: tuple[int, ...],
    widths: tuple[int, ...],
    mixers: tuple[str, ...],
    *,
    norm: str,
    act: str,
    stem: str,
    head: str,
    mlp_bias: bool,
    layer_scale: float | None = None,
    res_scale: tuple[float | None, ...] = (None, None, None, None),
    mixer_args: dict[str, dict[str, Any]] | None = None,
    overrides: dict[str, Any],
) -> MetaFormerSpec:
    mixer_args = mixer_args or {}
    stages = tuple(
        StageSpec(depth=d, width=w, mixer=m, mixer_args=mixer_args.get(m, {}), norm=norm, act=act,
                  mlp_ratio=4.0, layer_scale=layer_scale, res_scale=r)
        for d, w, m, r in zip(depths, widths, mixers, res_scale)
    )
    spec = MetaFormerSpec(stages=stages, stem=stem, stem_stride=4, mlp_bias=mlp_bias, head=head)
    return _override(spec, overrides)  # type: ignore[return-value]


# --------------------------------------------------------------------------- PoolFormer v1


def _poolformer_v1(depths: tuple[int, ...], widths: tuple[int, ...], layer_scale: float,
                   overrides: dict[str, Any]) -> MetaFormerSpec:
    return _metaformer(depths, widths, ("pooling",) * 4, norm="gn1", act="gelu", stem="v1",
                       head="linear", mlp_bias=True, layer_scale=layer_scale,
                       mixer_args={"pooling": {"pool_size": 3}}, overrides=overrides)


@register_preset(timm=True)
def poolformer_s12(**overrides: Any) -> ArchSpec:
    return _poolformer_v1(DEPTHS_12, WIDTHS_S, 1e-5, overrides)


@register_preset(timm=True)
def poolformer_s24(**overrides: Any) -> ArchSpec:
    return _poolformer_v1(DEPTHS_24, WIDTHS_S, 1e-5, overrides)


@register_preset(timm=True)
def poolformer_s36(**overrides: Any) -> ArchSpec:
    return _poolformer_v1(DEPTHS_36, WIDTHS_S, 1e-6, overrides)


@register_preset(timm=True)
def poolformer_m36(**overrides: Any) -> ArchSpec:
    return _poolformer_v1(DEPTHS_36, WIDTHS_M, 1e-6, overrides)


@register_preset(timm=True)
def poolformer_m48(**overrides: Any) -> ArchSpec:
    return _poolformer_v1(DEPTHS_48, WIDTHS_M, 1e-6, overrides)


# --------------------------------------------------------------------------- baselines (v2)


def _basic_v2(depths: tuple[int, ...], widths: tuple[int, ...], mixers: tuple[str, ...],
              overrides: dict[str, Any]) -> MetaFormerSpec:
    return _metaformer(depths, widths, mixers, norm="gn1_nobias", act="starrelu", stem="v2",
                       head="linear", mlp_bias=False, res_scale=V2_RES_SCALE,
                       mixer_args={"pooling": {"pool_size": 3}}, overrides=overrides)


_POOL = ("pooling",) * 4
_IDENT = ("identity",) * 4
_RAND = ("identity", "identity", "random", "random")


@register_preset(timm=True)
def poolformerv2_s12(**overrides: Any) -> ArchSpec:
    return _basic_v2(DEPTHS_12, WIDTHS_S, _POOL, overrides)


@register_preset(timm=True)
def poolformerv2_s24(**overrides: Any) -> ArchSpec:
    return _basic_v2(DEPTHS_24, WIDTHS_S, _POOL, overrides)


@register_preset(timm=True)
def poolformerv2_s36(**overrides: Any) -> ArchSpec:
    return _basic_v2(DEPTHS_36, WIDTHS_S, _POOL, overrides)


@register_preset(timm=True)
def poolformerv2_m36(**overrides: Any) -> ArchSpec:
    return _basic_v2(DEPTHS_36, WIDTHS_M, _POOL, overrides)


@register_preset(timm=True)
def poolformerv2_m48(**overrides: Any) -> ArchSpec:
    return _basic_v2(DEPTHS_48, WIDTHS_M, _POOL, overrides)


@register_preset
def identityformer_s12(**overrides: Any) -> ArchSpec:
    return _basic_v2(DEPTHS_12, WIDTHS_S, _IDENT, overrides)


@register_preset
def identityformer_s24(**overrides: Any) -> ArchSpec:
    return _basic_v2(DEPTHS_24, WIDTHS_S, _IDENT, overrides)


@register_preset
def identityformer_s36(**overrides: Any) -> ArchSpec:
    return _basic_v2(DEPTHS_36, WIDTHS_S, _IDENT, overrides)


@register_preset
def identityformer_m36(**overrides: Any) -> ArchSpec:
    return _basic_v2(DEPTHS_36, WIDTHS_M, _IDENT, overrides)


@register_preset
def identityformer_m48(**overrides: Any) -> ArchSpec:
    return _basic_v2(DEPTHS_48, WIDTHS_M, _IDENT, overrides)


@register_preset
def randformer_s12(**overrides: Any) -> ArchSpec:
    return _basic_v2(DEPTHS_12, WIDTHS_S, _RAND, overrides)


@register_preset
def randformer_s24(**overrides: Any) -> ArchSpec:
    return _basic_v2(DEPTHS_24, WIDTHS_S, _RAND, overrides)


@register_preset
def randformer_s36(**overrides: Any) -> ArchSpec:
    return _basic_v2(DEPTHS_36, WIDTHS_S, _RAND, overrides)


@register_preset
def randformer_m36(**overrides: Any) -> ArchSpec:
    return _basic_v2(DEPTHS_36, WIDTHS_M, _RAND, overrides)


@register_preset
def randformer_m48(**overrides: Any) -> ArchSpec:
    return _basic_v2(DEPTHS_48, WIDTHS_M, _RAND, overrides)


# --------------------------------------------------------------------------- ConvFormer / CAFormer

_CONV_ARGS = {"sepconv": {"kernel_size": 7, "expansion_ratio": 2}, "attention": {"head_dim": 32}}
_SEPCONV = ("sepconv",) * 4
_CA = ("sepconv", "sepconv", "attention", "attention")


def _conv_family(depths: tuple[int, ...], widths: tuple[int, ...], mixers: tuple[str, ...],
                 overrides: dict[str, Any]) -> MetaFormerSpec:
    return _metaformer(depths, widths, mixers, norm="ln_nobias", act="starrelu", stem="v2",
                       head="mlp", mlp_bias=False, res_scale=V2_RES_SCALE,
                       mixer_args=_CONV_ARGS, overrides=overrides)


@register_preset(timm=True)
def convformer_s18(**overrides: Any) -> ArchSpec:
    return _conv_family(DEPTHS_18_CONV, WIDTHS_S, _SEPCONV, overrides)


@register_preset(timm=True)
def convformer_s36(**overrides: Any) -> ArchSpec:
    return _conv_family(DEPTHS_36_CONV, WIDTHS_S, _SEPCONV, overrides)


@register_preset(timm=True)
def convformer_m36(**overrides: Any) -> ArchSpec:
    return _conv_family(DEPTHS_36_CONV, WIDTHS_M36_CONV, _SEPCONV, overrides)


@register_preset(timm=True)
def convformer_b36(**overrides: Any) -> ArchSpec:
    return _conv_family(DEPTHS_36_CONV, WIDTHS_B, _SEPCONV, overrides)


@register_preset(timm=True)
def caformer_s18(**overrides: Any) -> ArchSpec:
    return _conv_family(DEPTHS_18_CONV, WIDTHS_S, _CA, overrides)


@register_preset(timm=True)
def caformer_s36(**overrides: Any) -> ArchSpec:
    return _conv_family(DEPTHS_36_CONV, WIDTHS_S, _CA, overrides)


@register_preset(timm=True)
def caformer_m36(**overrides: Any) -> ArchSpec:
    return _conv_family(DEPTHS_36_CONV, WIDTHS_M36_CONV, _CA, overrides)


@register_preset(timm=True)
def caformer_b36(**overrides: Any) -> ArchSpec:
    return _conv_family(DEPTHS_36_CONV, WIDTHS_B, _CA, overrides)


# --------------------------------------------------------------------------- ConvMixer


def _convmixer(width: int, depth: int, kernel_size: int, patch_size: int, act: str,
               overrides: dict[str, Any]) -> ConvMixerSpec:
    spec = ConvMixerSpec(width=width, depth=depth, kernel_size=kernel_size,
                         patch_size=patch_size, act=act)
    return _override(spec, overrides)  # type: ignore[return-value]


@register_preset(timm=True)
def convmixer_1536_20(**overrides: Any) -> ArchSpec:
    return _convmixer(1536, 20, 9, 7, "gelu", overrides)


@register_preset(timm=True)
def convmixer_768_32(**overrides: Any) -> ArchSpec:
    return _convmixer(768, 32, 7, 7, "relu", overrides)


@register_preset(timm=True)
def convmixer_1024_20_ks9_p14(**overrides: Any) -> ArchSpec:
    return _convmixer(1024, 20, 9, 14, "gelu", overrides)


# --------------------------------------------------------------------------- tiny test presets


@register_preset
def test_metaformer_tiny(**overrides: Any) -> ArchSpec:
    """Every mixer kind (sepconv, pooling, attention, ufo) at 32x32, stride-2 stem, 10 classes.

    85k params, 2.0 MMACs: for fast forward/backward tests and smoke runs.
    """
    spec = MetaFormerSpec(
        stages=(
            StageSpec(1, 16, "sepconv", {"kernel_size": 3, "expansion_ratio": 2}),
            StageSpec(1, 24, "pooling", {"pool_size": 3}),
            StageSpec(1, 32, "attention", {"head_dim": 16}, res_scale=1.0),
            StageSpec(1, 48, "ufo", {"head_dim": 16}, res_scale=1.0),
        ),
        stem="v2", stem_stride=2, head="mlp", num_classes=10, img_size=32,
    )
    return _override(spec, overrides)


@register_preset
def test_randformer_tiny(**overrides: Any) -> ArchSpec:
    """RandFormer-shaped (identity, identity, random, random) at 32x32, stride-2 stem: 28k params.

    The random matrices are built for grids 4x4 and 2x2 (stages 3-4), so only 32x32 inputs run.
    """
    spec = MetaFormerSpec(
        stages=tuple(
            StageSpec(1, w, m, norm="gn1_nobias", res_scale=r)
            for w, m, r in zip((8, 16, 24, 32), _RAND, V2_RES_SCALE)
        ),
        stem="v2", stem_stride=2, head="linear", num_classes=10, img_size=32,
    )
    return _override(spec, overrides)


@register_preset
def test_convmixer_tiny(**overrides: Any) -> ArchSpec:
    """ConvMixer width 32, depth 2, kernel 3, patch 4 at 32x32, 10 classes: 5k params."""
    spec = ConvMixerSpec(width=32, depth=2, kernel_size=3, patch_size=4, num_classes=10,
                         img_size=32)
    return _override(spec, overrides)
