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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from timm.models.metaformer import Attention, Pooling, SepConv, StarReLU
from torch import nn

from nas.models._registry import Registry
from nas.models.layers import ACTS, build_act
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

@register_mixer(layout="nchw", kind="none", cost=lambda dim, grid: (0, 0, 0),
                description="no token mixing (IdentityFormer)")
def identity(dim: int, grid: tuple[int, int]) -> nn.Module:
    return nn.Identity()


# --------------------------------------------------------------------------- random mixing


class RandomMixing(nn.Module):
    """Frozen row-softmax N x N token mixing (RandFormer); N is the stage's actual grid size.

    The matrix fixes the grid: an input whose H x W differs from the one it was built for fails
    with a :class:`ConfigError` naming both grids (rather than a matmul shape error).
    """

    def __init__(self, num_tokens: int, grid: tuple[int, int] | None = None) -> None:
        super().__init__()
        if grid is not None and grid[0] * grid[1] != num_tokens:
            raise ConfigError(f"random: grid {grid[0]}x{grid[1]} has {grid[0] * grid[1]} tokens, "
                              f"not num_tokens {num_tokens}")
        self.num_tokens = num_tokens
        self.grid = tuple(grid) if grid is not None else None
        self.random_matrix = nn.Parameter(
            torch.softmax(torch.rand(num_tokens, num_tokens), dim=-1), requires_grad=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if h * w != self.num_tokens or (self.grid is not None and (h, w) != self.grid):
            built = (f"{self.grid[0]}x{self.grid[1]} grid ({self.num_tokens} tokens)"
                     if self.grid is not None else f"{self.num_tokens} tokens")
            raise ConfigError(
                f"random mixing was built for a {built} but got a {h}x{w} grid ({h * w} tokens): "
                "its frozen matrix fixes the input resolution; rebuild the model with the "
                "img_size that gives this grid"
            )
        y = x.reshape(b, c, h * w) @ self.random_matrix.transpose(0, 1)
        return y.reshape(b, c, h, w)


def _rand_cost(dim: int, grid: tuple[int, int]) -> Cost:
    n = grid[0] * grid[1]
    return n * n, n * n * dim, n * dim


@register_mixer(name="random", layout="nchw", kind="global", cost=_rand_cost,
                description="frozen random row-stochastic token matrix (RandFormer); fixes the "
                            "grid")
def _random(dim: int, grid: tuple[int, int]) -> nn.Module:
    return RandomMixing(grid[0] * grid[1], grid)


# --------------------------------------------------------------------------- pooling


def _check_pool(dim: int, grid: tuple[int, int], pool_size: int) -> None:
    _odd_kernel("pooling.pool_size", pool_size)


@register_mixer(layout="nchw", kind="local", defaults={"pool_size": 3},
                cost=lambda dim, grid, pool_size: (0, 0, 0), check=_check_pool,
                description="average pool minus input, padding excluded (PoolFormer)")
def pooling(dim: int, grid: tuple[int, int], pool_size: int) -> nn.Module:
    return Pooling(pool_size=pool_size)


# --------------------------------------------------------------------------- separable conv


def _sepconv_mid(dim: int, expansion_ratio: float) -> int:
    return int(expansion_ratio * dim)


def _sepconv_build(dim: int, grid, kernel_size: int, expansion_ratio: float) -> nn.Module:
    return SepConv(dim, expansion_ratio=expansion_ratio, act1_layer=StarReLU,
                   kernel_size=kernel_size, padding=kernel_size // 2)


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
)(_sepconv_build)


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


@register_mixer(layout="tokens", kind="global", defaults={"head_dim": 32},
                width_multiple_of="head_dim", cost=_attn_cost,
                check=lambda dim, grid, head_dim: _check_heads("attention", dim, head_dim),
                description="softmax multi-head self-attention, no biases (CAFormer stages 3-4)")
def attention(dim: int, grid: tuple[int, int], head_dim: int) -> nn.Module:
    return Attention(dim, head_dim=head_dim)


# --------------------------------------------------------------------------- UFO-ViT XNorm


class XNormAttention(nn.Module):
    """UFO-ViT cross-normalised linear attention: Y = XN_c(Q) . XN_0(K^T V), linear in N.

    Convention (the sources disagree; this follows the paper's equations): Q is L2-normalised per
    token over its head channels, K^T V (d x d per head) over its first (key-channel) axis, so
    Y[n, j] = gamma^2 cos(q_n, (K^T V)[:, j]). One learnable gamma per head (init 1) is shared by
    both XNorms; eps 1e-6 guards zero norms; q/k/v and output projections have no bias, matching
    the softmax attention it replaces. https://arxiv.org/abs/2109.14382
    """

    def __init__(self, dim: int, head_dim: int = 32, eps: float = 1e-6) -> None:
        super().__init__()
        self.num_heads = dim // head_dim
        self.head_dim = head_dim
        self.eps = eps
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.gamma = nn.Parameter(torch.ones(self.num_heads, 1, 1))
        self.proj = nn.Linear(dim, dim, bias=False)

    def _xnorm(self, t: torch.Tensor, dim: int) -> torch.Tensor:
        return self.gamma * t / (t.norm(dim=dim, keepdim=True) + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, heads, N, d)
        kv = k.transpose(-2, -1) @ v  # (B, heads, d, d)
        y = self._xnorm(q, dim=-1) @ self._xnorm(kv, dim=-2)  # (B, heads, N, d)
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


def _ufo_cost(dim: int, grid, head_dim: int) -> Cost:
    n, heads = grid[0] * grid[1], dim // head_dim
    macs = 4 * dim * dim * n + 2 * n * dim * head_dim
    acts = 3 * dim * n + heads * head_dim * head_dim + dim * n + dim * n
    return 4 * dim * dim + heads, macs, acts


@register_mixer(layout="tokens", kind="global", defaults={"head_dim": 32},
                width_multiple_of="head_dim", cost=_ufo_cost,
                check=lambda dim, grid, head_dim: _check_heads("ufo", dim, head_dim),
                description="UFO-ViT cross-normalised (XNorm) linear attention")
def ufo(dim: int, grid: tuple[int, int], head_dim: int) -> nn.Module:
    return XNormAttention(dim, head_dim)


# --------------------------------------------------------------------------- ConvMixer mixing


class ConvMixerMixing(nn.Module):
    """ConvMixer's token mixing: depthwise k x k conv ("same" padding, bias), act, BatchNorm."""

    def __init__(self, dim: int, kernel_size: int = 9, act: str = "gelu") -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, groups=dim, padding="same")
        self.act = build_act(act)
        self.norm = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.dwconv(x)))


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
    return ConvMixerMixing(dim, kernel_size, act)

