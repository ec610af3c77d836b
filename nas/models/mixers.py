"""Token mixers of the MetaFormer family, each with its analytic cost beside its constructor.

Every mixer is registered with: its layout ("nchw" or "tokens"), its kind ("none", "local",
"global": used by cross-stage constraints such as conv-before-attention), its settings with
defaults (their types follow the defaults; ``float_settings`` may be fractional), its width rule
(``width_multiple_of``: the setting every width must be a multiple of, e.g. ``head_dim``), a
builder ``build(dim, grid, **args)`` and a cost ``cost(dim, grid, **args) -> (params, macs,
acts)`` for batch 1. Search spaces, proxy reduction and the contract tests ask the registry, so
a new mixer is one :func:`register_mixer` definition. MACs count convolutions, matrix products
and attention (MACs = FLOPs / 2); acts count the output elements of those same operations
(pycls convention).

The built-in mixers' modules and builders live in ``portable.py`` (the model code that
``python -m nas export`` ships as a stand-alone ``model.py``), and a shipped mixer must be there
too (``tests/nas_tests/test_nas_portable.py``); a mixer registered elsewhere at run time builds,
costs and trains, but export refuses it by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from nas.models import portable
from nas.models._registry import Registry
from nas.models.layers import ACTS
from nas_errors import ConfigError

__all__ = ["MixerDef", "MIXERS", "register_mixer", "RandomMixing", "XNormAttention",
           "ConvMixerMixing"]

Cost = tuple[int, int, int]  # (params, macs, acts)


@dataclass(frozen=True)
class MixerDef:
    """A registered token mixer."""

    name: str
    layout: str  # "nchw" or "tokens" (attention-like mixers see (B, N, C))
    kind: str  # "none" (no mixing), "local" (conv/pool), "global" (attention, random)
    defaults: dict[str, Any]  # every setting with its default value
    build: Callable[..., nn.Module]  # (dim, grid, **args) -> module
    cost: Callable[..., Cost]  # (dim, grid, **args) -> (params, macs, acts)
    check: Callable[..., None] = field(default=lambda dim, grid, **a: None)  # raise on bad args
    description: str = ""
    width_multiple_of: str | None = None  # setting every width must be a multiple of (head_dim)
    float_settings: tuple[str, ...] = ()  # settings that may be fractional (else: default's type)

    def setting_kind(self, key: str) -> str:
        """"int", "float", "number" (int or float), "str" or "bool": what ``key`` takes."""
        if key in self.float_settings:
            return "number"
        default = self.defaults[key]
        if isinstance(default, bool):
            return "bool"
        return {int: "int", float: "float", str: "str"}.get(type(default), "str")

    def width_quantum(self, args: dict[str, Any]) -> int:
        """What this mixer's widths must be a multiple of with settings ``args`` (1: any)."""
        return int(args[self.width_multiple_of]) if self.width_multiple_of else 1

    def resolve(self, args: dict[str, Any], where: str = "mixer_args") -> dict[str, Any]:
        """Defaults overlaid with ``args``; unknown settings fail with the allowed ones."""
        unknown = sorted(set(args) - set(self.defaults))
        if unknown:
            allowed = ", ".join(self.defaults) or "none"
            raise ConfigError(
                f"{where}: mixer '{self.name}' has no setting(s) {unknown}; allowed: {allowed}"
            )
        return {**self.defaults, **args}


MIXERS: Registry[MixerDef] = Registry("token mixer")


def register_mixer(*, layout: str, kind: str, cost: Callable[..., Cost],
                   defaults: dict[str, Any] | None = None,
                   check: Callable[..., None] | None = None, width_multiple_of: str | None = None,
                   float_settings: tuple[str, ...] = (), description: str = "",
                   name: str | None = None) -> Callable[[Callable[..., nn.Module]],
                                                        Callable[..., nn.Module]]:
    """Register a builder ``(dim, grid, **settings) -> nn.Module`` as a token mixer (decorator).

    The name defaults to the builder's ``__name__``; see the module docstring for the fields.

    Example:
        >>> @register_mixer(layout="nchw", kind="local", defaults={"groups": 1},
        ...                 width_multiple_of="groups",
        ...                 cost=lambda dim, grid, groups: (
        ...                     dim * dim // groups, dim * dim // groups * grid[0] * grid[1],
        ...                     dim * grid[0] * grid[1]))
        ... def pointwise(dim, grid, groups):
        ...     return nn.Conv2d(dim, dim, 1, groups=groups, bias=False)
    """

    def deco(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or build.__name__
        extra = {} if check is None else {"check": check}
        MIXERS.add(key, MixerDef(key, layout, kind, dict(defaults or {}), build=build, cost=cost,
                                 description=description, width_multiple_of=width_multiple_of,
                                 float_settings=tuple(float_settings), **extra))
        return build

    return deco


def _odd_kernel(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1 or value % 2 == 0:
        raise ConfigError(
            f"{name} must be an odd positive integer (padding = k // 2); got {value!r}"
        )


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a positive integer; got {value!r}")


# --------------------------------------------------------------------------- identity

register_mixer(name="identity", layout="nchw", kind="none", cost=lambda dim, grid: (0, 0, 0),
               description="no token mixing (IdentityFormer)")(portable.identity)


# --------------------------------------------------------------------------- random mixing


class RandomMixing(portable.RandomMixing):
    """Frozen row-softmax N x N token mixing (RandFormer), as in ``portable.py``; a grid that
    differs from the one it was built for raises :class:`ConfigError` (naming both grids)."""

    error = ConfigError


def _rand_cost(dim: int, grid: tuple[int, int]) -> Cost:
    n = grid[0] * grid[1]
    return n * n, n * n * dim, n * dim


@register_mixer(name="random", layout="nchw", kind="global", cost=_rand_cost,
                description="frozen random row-stochastic token matrix (RandFormer); fixes the "
                            "grid")
def _random(dim: int, grid: tuple[int, int]) -> nn.Module:
    return RandomMixing(grid[0] * grid[1], grid)  # portable.random_mixing, raising ConfigError


# --------------------------------------------------------------------------- pooling


def _check_pool(dim: int, grid: tuple[int, int], pool_size: int) -> None:
    _odd_kernel("pooling.pool_size", pool_size)


register_mixer(name="pooling", layout="nchw", kind="local", defaults={"pool_size": 3},
               cost=lambda dim, grid, pool_size: (0, 0, 0), check=_check_pool,
               description="average pool minus input, padding excluded (PoolFormer)",
               )(portable.pooling)


# --------------------------------------------------------------------------- separable conv


def _sepconv_mid(dim: int, expansion_ratio: float) -> int:
    return int(expansion_ratio * dim)


def _sepconv_cost(dim: int, grid, kernel_size: int, expansion_ratio: float) -> Cost:
    n, mid, k2 = grid[0] * grid[1], _sepconv_mid(dim, expansion_ratio), kernel_size ** 2
    params = 2 * dim * mid + k2 * mid + ACTS.get("starrelu").params
    return params, (2 * dim * mid + k2 * mid) * n, (2 * mid + dim) * n


def _check_sepconv(dim: int, grid, kernel_size: int, expansion_ratio: float) -> None:
    _odd_kernel("sepconv.kernel_size", kernel_size)
    if not isinstance(expansion_ratio, (int, float)) or expansion_ratio <= 0:
        raise ConfigError(f"sepconv.expansion_ratio must be > 0; got {expansion_ratio!r}")
    if _sepconv_mid(dim, expansion_ratio) < 1:
        raise ConfigError(f"sepconv: expansion_ratio {expansion_ratio} x width {dim} < 1 channel")


register_mixer(
    name="sepconv", layout="nchw", kind="local",
    defaults={"kernel_size": 7, "expansion_ratio": 2}, float_settings=("expansion_ratio",),
    cost=_sepconv_cost, check=_check_sepconv,
    description="inverted separable conv: pw 1x1, StarReLU, depthwise kxk, pw 1x1 (ConvFormer)",
)(portable.sepconv)


# --------------------------------------------------------------------------- self-attention


def _check_heads(name: str, dim: int, head_dim: int) -> None:
    _positive_int(f"{name}.head_dim", head_dim)
    if dim % head_dim:
        lower, upper = max(head_dim, dim // head_dim * head_dim), (dim // head_dim + 1) * head_dim
        raise ConfigError(
            f"{name}: width {dim} must be a multiple of head_dim {head_dim} "
            f"(e.g. {lower} or {upper})"
        )


def _attn_cost(dim: int, grid, head_dim: int) -> Cost:
    n = grid[0] * grid[1]
    heads = dim // head_dim  # the math form materialises one N x N score matrix per head
    return 4 * dim * dim, 4 * dim * dim * n + 2 * n * n * dim, 5 * dim * n + heads * n * n


register_mixer(name="attention", layout="tokens", kind="global", defaults={"head_dim": 32},
               width_multiple_of="head_dim", cost=_attn_cost,
               check=lambda dim, grid, head_dim: _check_heads("attention", dim, head_dim),
               description="softmax multi-head self-attention, no biases (CAFormer stages 3-4)",
               )(portable.attention)


# --------------------------------------------------------------------------- UFO-ViT XNorm


XNormAttention = portable.XNormAttention  # UFO-ViT XNorm attention; source in portable.py


def _ufo_cost(dim: int, grid, head_dim: int) -> Cost:
    n, heads = grid[0] * grid[1], dim // head_dim
    macs = 4 * dim * dim * n + 2 * n * dim * head_dim
    acts = 3 * dim * n + heads * head_dim * head_dim + dim * n + dim * n
    return 4 * dim * dim + heads, macs, acts


register_mixer(name="ufo", layout="tokens", kind="global", defaults={"head_dim": 32},
               width_multiple_of="head_dim", cost=_ufo_cost,
               check=lambda dim, grid, head_dim: _check_heads("ufo", dim, head_dim),
               description="UFO-ViT cross-normalised (XNorm) linear attention",
               )(portable.ufo)


# --------------------------------------------------------------------------- ConvMixer mixing


ConvMixerMixing = portable.ConvMixerMixing  # depthwise conv, act, BatchNorm; in portable.py


def _cm_cost(dim: int, grid, kernel_size: int, act: str) -> Cost:
    n = grid[0] * grid[1]
    params = kernel_size ** 2 * dim + dim + 2 * dim + ACTS.get(act).params
    return params, kernel_size ** 2 * dim * n, dim * n


def _check_cm(dim: int, grid, kernel_size: int, act: str) -> None:
    _positive_int("convmixer.kernel_size", kernel_size)
    ACTS.get(act)


@register_mixer(layout="nchw", kind="local", defaults={"kernel_size": 9, "act": "gelu"},
                cost=_cm_cost, check=_check_cm,
                description="depthwise conv, activation, BatchNorm (ConvMixer's spatial mixing)")
def convmixer(dim: int, grid: tuple[int, int], kernel_size: int, act: str) -> nn.Module:
    return ConvMixerMixing(dim, kernel_size, ACTS.get(act).factory)  # any registered act

