"""The modules that run a built model, from a plain config dict, importing only torch and timm.

This file is the one source of the model code. The project's builder (``nas.models.model``)
uses it with its registries (which take their built-in entries from the tables here), and
``python -m nas export`` ships this file's source, followed by the exported configuration, as
a stand-alone ``model.py``: so it may import nothing from this project (an import-linter
contract and the export tests hold it to that).

A config is ``nas.models.to_dict(spec)`` with every mixer's settings filled in
(``nas.models.model.runtime_config``). Module names mirror ``timm.models.metaformer`` (``stem``,
``stages.i.downsample``, ``stages.i.blocks.j.{norm1,token_mixer,...}``, ``head``), so the
state dicts of the presets timm also has load into timm's models and back.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import torch
from timm.layers import (
    DropPath,
    GroupNorm1,
    LayerNorm,
    LayerNorm2d,
    Mlp,
    SelectAdaptivePool2d,
    trunc_normal_,
)
from timm.models.convmixer import ConvMixer
from timm.models.metaformer import (
    Attention,
    Downsampling,
    GroupNorm1NoBias,
    LayerNorm2dNoBias,
    LayerNormNoBias,
    MlpHead,
    Pooling,
    Scale,
    SepConv,
    SquaredReLU,
    StarReLU,
)
from torch import nn

# --------------------------------------------------------------------------- geometry

#: stem convolution (kernel, stride, padding) by stem stride: 4 is the papers' k7 s4 p2 stem;
#: 2 and 1 adapt tiny proxy inputs
STEM_GEOMETRY = {4: (7, 4, 2), 2: (3, 2, 1), 1: (3, 1, 1)}


def stem_geometry(stem_stride: int) -> tuple[int, int, int]:
    """(kernel, stride, padding) of the stem convolution."""
    return STEM_GEOMETRY[stem_stride]


def _conv_out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def grid_sides(img_size: int, stem_stride: int, n_stages: int) -> tuple[int, ...]:
    """Grid side of every stage: stem, then a k3/s2/p1 downsampling before stages 2..n."""
    k, s, p = stem_geometry(stem_stride)
    sides = [_conv_out(img_size, k, s, p)]
    for _ in range(n_stages - 1):
        sides.append(_conv_out(sides[-1], 3, 2, 1))
    return tuple(sides)


# --------------------------------------------------------------------------- norms, activations


class GroupNorm1Tokens(nn.Module):
    """GroupNorm with one group for (B, N, C) tokens: statistics over (N, C), affine per
    channel."""

    def __init__(self, num_channels: int, eps: float = 1e-5, bias: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.group_norm(x.transpose(1, 2), 1, None, None, self.eps).transpose(1, 2)
        y = y * self.weight
        return y + self.bias if self.bias is not None else y


class BatchNormTokens(nn.BatchNorm1d):
    """BatchNorm over channels for (B, N, C) tokens."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


#: norm name -> (factory for (B, C, H, W) inputs, factory for (B, N, C) tokens)
NORMS: dict[str, tuple[Callable[[int], nn.Module], Callable[[int], nn.Module]]] = {
    "gn1": (GroupNorm1, lambda c: GroupNorm1Tokens(c, 1e-5, True)),
    "gn1_nobias": (GroupNorm1NoBias, lambda c: GroupNorm1Tokens(c, 1e-6, False)),
    "ln": (lambda c: LayerNorm2d(c), lambda c: LayerNorm(c)),
    "ln_nobias": (LayerNorm2dNoBias, LayerNormNoBias),
    "bn": (nn.BatchNorm2d, BatchNormTokens),
}

#: activation name -> factory
ACTS: dict[str, Callable[[], nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "starrelu": StarReLU,
    "squaredrelu": SquaredReLU,
}


# --------------------------------------------------------------------------- token mixers


class RandomMixing(nn.Module):
    """Frozen row-softmax N x N token mixing (RandFormer); N is the stage's actual grid size.

    The matrix fixes the grid: an input whose H x W differs from the one it was built for fails
    with ``error`` (ValueError here; the project's subclass raises its ConfigError) naming both
    grids, rather than with a matmul shape error.
    """

    error: type[Exception] = ValueError

    def __init__(self, num_tokens: int, grid: tuple[int, int] | None = None) -> None:
        super().__init__()
        if grid is not None and grid[0] * grid[1] != num_tokens:
            raise self.error(f"random: grid {grid[0]}x{grid[1]} has {grid[0] * grid[1]} tokens, "
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
            raise self.error(
                f"random mixing was built for a {built} but got a {h}x{w} grid ({h * w} tokens): "
                "its frozen matrix fixes the input resolution; rebuild the model with the "
                "img_size that gives this grid"
            )
        y = x.reshape(b, c, h * w) @ self.random_matrix.transpose(0, 1)
        return y.reshape(b, c, h, w)


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


class ConvMixerMixing(nn.Module):
    """ConvMixer's token mixing: depthwise k x k conv ("same" padding, bias), act, BatchNorm."""

    def __init__(self, dim: int, kernel_size: int = 9,
                 act_layer: Callable[[], nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, groups=dim, padding="same")
        self.act = act_layer()
        self.norm = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.dwconv(x)))


# Builders (dim, grid, **settings) -> module; settings come filled in (no defaults here).

def identity(dim: int, grid: tuple[int, int]) -> nn.Module:
    return nn.Identity()


def random_mixing(dim: int, grid: tuple[int, int]) -> nn.Module:
    return RandomMixing(grid[0] * grid[1], grid)


def pooling(dim: int, grid: tuple[int, int], pool_size: int) -> nn.Module:
    return Pooling(pool_size=pool_size)


def sepconv(dim: int, grid: tuple[int, int], kernel_size: int,
            expansion_ratio: float) -> nn.Module:
    return SepConv(dim, expansion_ratio=expansion_ratio, act1_layer=StarReLU,
                   kernel_size=kernel_size, padding=kernel_size // 2)


def attention(dim: int, grid: tuple[int, int], head_dim: int) -> nn.Module:
    return Attention(dim, head_dim=head_dim)


def ufo(dim: int, grid: tuple[int, int], head_dim: int) -> nn.Module:
    return XNormAttention(dim, head_dim)


def convmixer(dim: int, grid: tuple[int, int], kernel_size: int, act: str) -> nn.Module:
    return ConvMixerMixing(dim, kernel_size, ACTS[act])


#: mixer name -> (layout: "nchw", or "tokens" for (B, N, C) inputs, builder)
MIXERS: dict[str, tuple[str, Callable[..., nn.Module]]] = {
    "identity": ("nchw", identity),
    "random": ("nchw", random_mixing),
    "pooling": ("nchw", pooling),
    "sepconv": ("nchw", sepconv),
    "attention": ("tokens", attention),
    "ufo": ("tokens", ufo),
    "convmixer": ("nchw", convmixer),
}


def _lookup(table: Mapping[str, Any], kind: str, name: str) -> Any:
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; known: {', '.join(sorted(table))}")
    return table[name]


class Layers:
    """What the names in a config mean, from the tables above (the project's registries
    subclass this)."""

    def layout(self, mixer: str) -> str:
        return _lookup(MIXERS, "token mixer", mixer)[0]

    def mixer(self, name: str, dim: int, grid: tuple[int, int],
              settings: Mapping[str, Any]) -> nn.Module:
        return _lookup(MIXERS, "token mixer", name)[1](dim, grid, **settings)

    def norm(self, name: str, dim: int, layout: str) -> nn.Module:
        nchw, tokens = _lookup(NORMS, "norm", name)
        return tokens(dim) if layout == "tokens" else nchw(dim)

    def act(self, name: str) -> Callable[[], nn.Module]:
        return _lookup(ACTS, "activation", name)


# --------------------------------------------------------------------------- network


class Stem(nn.Module):
    """Stem conv (k7 s4 p2 in the papers) with an optional post-norm (v2)."""

    def __init__(self, in_chans: int, out_chans: int, stride: int, norm: bool) -> None:
        super().__init__()
        k, s, p = stem_geometry(stride)
        self.conv = nn.Conv2d(in_chans, out_chans, kernel_size=k, stride=s, padding=p)
        self.norm = LayerNorm2dNoBias(out_chans) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


def _scale(dim: int, init: float | None, nchw: bool) -> nn.Module:
    return nn.Identity() if init is None else Scale(dim, init_value=init, use_nchw=nchw)


class Block(nn.Module):
    """MetaFormer block: x = r1*x + s1*mixer(norm1(x)); x = r2*x + s2*mlp(norm2(x))."""

    def __init__(self, stage: Mapping[str, Any], grid: tuple[int, int], layout: str,
                 drop_path: float, mlp_bias: bool, layers: Layers | None = None) -> None:
        super().__init__()
        layers = layers or Layers()
        dim, nchw = stage["width"], layout == "nchw"
        act = layers.act(stage["act"])
        self.norm1 = layers.norm(stage["norm"], dim, layout)
        self.token_mixer = layers.mixer(stage["mixer"], dim, grid, stage["mixer_args"])
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.layer_scale1 = _scale(dim, stage["layer_scale"], nchw)
        self.res_scale1 = _scale(dim, stage["res_scale"], nchw)
        self.norm2 = layers.norm(stage["norm"], dim, layout)
        self.mlp = Mlp(dim, int(stage["mlp_ratio"] * dim), act_layer=act, bias=mlp_bias,
                       use_conv=nchw)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.layer_scale2 = _scale(dim, stage["layer_scale"], nchw)
        self.res_scale2 = _scale(dim, stage["res_scale"], nchw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = self.token_mixer(self.norm1(x))
        x = self.res_scale1(x) + self.layer_scale1(self.drop_path1(mixed))
        return self.res_scale2(x) + self.layer_scale2(self.drop_path2(self.mlp(self.norm2(x))))


class Stage(nn.Module):
    """Optional downsampling (k3 s2 p1), then blocks; attention-like mixers see (B, N, C)."""

    def __init__(self, in_chans: int, stage: Mapping[str, Any], grid: tuple[int, int],
                 first: bool, pre_norm: bool, dp_rates: list[float], mlp_bias: bool,
                 layers: Layers | None = None) -> None:
        super().__init__()
        layers = layers or Layers()
        layout = layers.layout(stage["mixer"])
        self.use_nchw = layout == "nchw"
        self.downsample = nn.Identity() if first else Downsampling(
            in_chans, stage["width"], kernel_size=3, stride=2, padding=1,
            norm_layer=LayerNorm2dNoBias if pre_norm else None,
        )
        self.blocks = nn.Sequential(*[
            Block(stage, grid, layout, dp_rates[j], mlp_bias, layers)
            for j in range(stage["depth"])
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
    """Hierarchical MetaFormer built from a config dict (timm-compatible module names)."""

    def __init__(self, config: Mapping[str, Any], drop_path_rate: float = 0.0,
                 drop_rate: float = 0.0, layers: Layers | None = None) -> None:
        super().__init__()
        layers = layers or Layers()
        specs = config["stages"]
        self.num_classes = config["num_classes"]
        self.num_features = specs[-1]["width"]
        v2 = config["stem"] == "v2"
        self.stem = Stem(config["in_chans"], specs[0]["width"], config["stem_stride"], norm=v2)
        total = sum(s["depth"] for s in specs)
        rates = [drop_path_rate * j / max(total - 1, 1) for j in range(total)]
        sides = grid_sides(config["img_size"], config["stem_stride"], len(specs))
        stages, prev, start = [], specs[0]["width"], 0
        for i, (stage, side) in enumerate(zip(specs, sides)):
            dp = rates[start:start + stage["depth"]]
            stages.append(Stage(prev, stage, (side, side), i == 0, v2, dp, config["mlp_bias"],
                                layers))
            prev, start = stage["width"], start + stage["depth"]
        self.stages = nn.Sequential(*stages)
        c, n = self.num_features, self.num_classes
        fc = MlpHead(c, n) if config["head"] == "mlp" else nn.Linear(c, n)
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


def build(config: Mapping[str, Any], *, drop_path_rate: float = 0.0, drop_rate: float = 0.0,
          layers: Layers | None = None) -> nn.Module:
    """The model a config describes (``family`` metaformer or convmixer), freshly initialised."""
    if config.get("family", "metaformer") == "convmixer":
        act = (layers or Layers()).act(config["act"])
        return ConvMixer(config["width"], config["depth"], kernel_size=config["kernel_size"],
                         patch_size=config["patch_size"], in_chans=config["in_chans"],
                         num_classes=config["num_classes"], drop_rate=drop_rate, act_layer=act)
    return MetaFormerNet(config, drop_path_rate=drop_path_rate, drop_rate=drop_rate,
                         layers=layers)


def timm_cfg(config: Mapping[str, Any]) -> dict[str, Any]:
    """timm's ``pretrained_cfg`` for a config: input size and preprocessing that timm's data
    pipeline (``resolve_data_config``, ``train.py``) reads; no weights to download."""
    convmixer_family = config.get("family", "metaformer") == "convmixer"
    return {
        "url": "", "num_classes": config["num_classes"],
        "input_size": (config["in_chans"], config["img_size"], config["img_size"]),
        "pool_size": None, "crop_pct": 0.96 if convmixer_family else 1.0,
        "interpolation": "bicubic", "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
        "first_conv": "stem.0" if convmixer_family else "stem.conv",
        "classifier": "head" if convmixer_family else "head.fc",
    }
