"""Frozen architecture descriptions: the one thing builder, cost model, database and export take.

A search space compiles down to a :class:`MetaFormerSpec` (4-stage hierarchical MetaFormer) or a
:class:`ConvMixerSpec` (isotropic ConvMixer). Both round-trip through canonical JSON, whose hash is
the de-duplication key in the database.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Union

from nas.models.portable import grid_sides, stem_geometry  # geometry of the model code
from nas_errors import ConfigError

__all__ = [
    "StageSpec",
    "MetaFormerSpec",
    "ConvMixerSpec",
    "ArchSpec",
    "to_dict",
    "from_dict",
    "canonical_json",
    "arch_hash",
    "describe",
    "stem_geometry",
    "grid_sides",
    "stage_grids",
]

STEMS = ("v1", "v2")  # v1: PoolFormer (no norms in stem/downsampling); v2: baselines (LN, no bias)
STEM_STRIDES = (4, 2, 1)  # 4 is the papers' k7/s4/p2 stem; 2 and 1 adapt tiny proxy inputs
HEADS = ("linear", "mlp")


@dataclass(frozen=True)
class StageSpec:
    """One stage of a hierarchical MetaFormer."""

    depth: int  # number of blocks (>= 1)
    width: int  # channels
    mixer: str  # registered token-mixer name (nas.models.mixers)
    mixer_args: tuple[tuple[str, Any], ...] = ()  # mixer settings, sorted by key
    norm: str = "ln_nobias"  # registered norm name (nas.models.layers), layout chosen by the mixer
    act: str = "starrelu"  # channel-MLP activation
    mlp_ratio: float = 4.0  # MLP hidden width / width
    layer_scale: float | None = None  # LayerScale init value on both branches (None: off)
    res_scale: float | None = None  # ResScale init value on both shortcuts (None: off)

    def __post_init__(self) -> None:
        args = self.mixer_args
        if isinstance(args, dict):
            args = tuple(args.items())
        object.__setattr__(self, "mixer_args", tuple(sorted((str(k), v) for k, v in args)))

    @property
    def args(self) -> dict[str, Any]:
        return dict(self.mixer_args)


@dataclass(frozen=True)
class MetaFormerSpec:
    """A 4-stage (or n-stage) hierarchical MetaFormer: stem, stages with downsampling, head."""

    stages: tuple[StageSpec, ...]  # one entry per stage, strides 4 (stem), then x2 per stage
    stem: str = "v2"  # "v1" (PoolFormer) or "v2" (MetaFormer baselines) stem/downsampling
    stem_stride: int = 4  # 4: k7 s4 p2 (papers); 2: k3 s2 p1; 1: k3 s1 p1 (tiny proxy inputs)
    mlp_bias: bool = False  # biases in the channel MLP (v1: True)
    head: str = "mlp"  # "linear" or "mlp" (MlpHead: fc, SquaredReLU, LN, fc)
    num_classes: int = 1000  # classifier outputs
    in_chans: int = 3  # input channels
    img_size: int = 224  # input side in pixels: grids, random-mixing size and costs use it
    family: str = field(default="metaformer", init=False)

    def __post_init__(self) -> None:
        stages = tuple(
            s if isinstance(s, StageSpec) else StageSpec(**s) for s in self.stages
        )
        object.__setattr__(self, "stages", stages)

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(s.depth for s in self.stages)

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(s.width for s in self.stages)

    @property
    def mixers(self) -> tuple[str, ...]:
        return tuple(s.mixer for s in self.stages)


@dataclass(frozen=True)
class ConvMixerSpec:
    """Isotropic ConvMixer (Trockman & Kolter): patch embedding, then depthwise/pointwise
    layers."""

    width: int  # channels h
    depth: int  # layers d
    kernel_size: int = 9  # depthwise kernel k ("same" padding)
    patch_size: int = 7  # patch embedding kernel and stride p
    act: str = "gelu"  # activation after every conv
    num_classes: int = 1000
    in_chans: int = 3
    img_size: int = 224
    family: str = field(default="convmixer", init=False)


ArchSpec = Union[MetaFormerSpec, ConvMixerSpec]


# --------------------------------------------------------------------------- serialization


def to_dict(spec: ArchSpec) -> dict[str, Any]:
    """Plain JSON-able dict (mixer_args as a dict), ``family`` first."""
    d = dataclasses.asdict(spec)
    if isinstance(spec, MetaFormerSpec):
        for s, sd in zip(spec.stages, d["stages"]):
            sd["mixer_args"] = dict(s.mixer_args)
    return d


def from_dict(d: dict[str, Any]) -> ArchSpec:
    """Inverse of :func:`to_dict`; unknown fields fail with the allowed ones."""
    d = dict(d)
    family = d.pop("family", "metaformer")
    cls = {"metaformer": MetaFormerSpec, "convmixer": ConvMixerSpec}.get(family)
    if cls is None:
        raise ConfigError(f"family must be one of metaformer, convmixer; got {family!r}")
    _check_fields(cls, d, "architecture")
    if cls is MetaFormerSpec:
        stages = []
        for i, sd in enumerate(d.get("stages", ())):
            _check_fields(StageSpec, sd, f"stages[{i}]")
            stages.append(StageSpec(**sd))
        d["stages"] = tuple(stages)
    return cls(**d)


def _check_fields(cls: type, d: dict[str, Any], where: str) -> None:
    allowed = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; allowed: {', '.join(allowed)}")


def canonical_json(spec: ArchSpec) -> str:
    """Deterministic JSON (sorted keys, no spaces, ints as ints): the database key's source."""
    return json.dumps(to_dict(spec), sort_keys=True, separators=(",", ":"))


def arch_hash(spec: ArchSpec) -> str:
    """First 16 hex digits of the SHA-256 of the canonical JSON."""
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()[:16]


def describe(spec: ArchSpec) -> str:
    """Short human name: ``attn/conv/... d2-2-6-2 w64-128-320-512`` or ``convmixer h256 d8 k9``."""
    if isinstance(spec, ConvMixerSpec):
        return f"convmixer h{spec.width} d{spec.depth} k{spec.kernel_size}"
    return ("/".join(m[:4] for m in spec.mixers) + " d" + "-".join(map(str, spec.depths))
            + " w" + "-".join(map(str, spec.widths)))


# --------------------------------------------------------------------------- geometry


def stage_grids(spec: MetaFormerSpec) -> tuple[tuple[int, int], ...]:
    """Token grid (H, W) of every stage (square inputs)."""
    return tuple((h, h) for h in grid_sides(spec.img_size, spec.stem_stride, len(spec.stages)))
