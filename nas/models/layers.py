"""Norms and activations, registered by name; each norm exists in both layouts.

A stage's layout is set by its mixer: NCHW for convolution-like mixers, (B, N, C) tokens for
attention-like ones. A norm name means one operation (e.g. "LayerNorm over channels"), and the
builder picks the class for the stage's layout, so a norm can never normalise the wrong axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from timm.layers import GroupNorm1, LayerNorm, LayerNorm2d
from timm.models.metaformer import (
    GroupNorm1NoBias,
    LayerNorm2dNoBias,
    LayerNormNoBias,
    SquaredReLU,
    StarReLU,
)
from torch import nn

from nas.models._registry import Registry

__all__ = ["NormDef", "ActDef", "NORMS", "ACTS", "build_norm", "build_act"]


@dataclass(frozen=True)
class NormDef:
    """A normalisation in both layouts, with its parameter count per channel."""

    name: str  # registry name
    nchw: Callable[[int], nn.Module]  # factory for (B, C, H, W) inputs
    tokens: Callable[[int], nn.Module]  # factory for (B, N, C) inputs
    params_per_channel: int  # learnable parameters per channel (weight [+ bias])
    description: str


@dataclass(frozen=True)
class ActDef:
    name: str
    factory: Callable[[], nn.Module]
    params: int  # learnable scalars per instance (StarReLU: scale and bias)


NORMS: Registry[NormDef] = Registry("norm")
ACTS: Registry[ActDef] = Registry("activation")


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


def _norm(name: str, nchw, tokens, ppc: int, description: str) -> None:
    NORMS.add(name, NormDef(name, nchw, tokens, ppc, description))


_norm("gn1", GroupNorm1, lambda c: GroupNorm1Tokens(c, 1e-5, True), 2,
      "GroupNorm(1) with bias, eps 1e-5: PoolFormer v1's 'modified LayerNorm'")
_norm("gn1_nobias", GroupNorm1NoBias, lambda c: GroupNorm1Tokens(c, 1e-6, False), 1,
      "GroupNorm(1) without bias, eps 1e-6: IdentityFormer/RandFormer/PoolFormerV2")
_norm("ln", lambda c: LayerNorm2d(c), lambda c: LayerNorm(c), 2,
      "LayerNorm over channels with bias, eps 1e-6")
_norm("ln_nobias", LayerNorm2dNoBias, LayerNormNoBias, 1,
      "LayerNorm over channels without bias, eps 1e-6: ConvFormer/CAFormer")
_norm("bn", nn.BatchNorm2d, BatchNormTokens, 2, "BatchNorm over channels")

ACTS.add("gelu", ActDef("gelu", nn.GELU, 0))
ACTS.add("relu", ActDef("relu", nn.ReLU, 0))
ACTS.add("silu", ActDef("silu", nn.SiLU, 0))
ACTS.add("starrelu", ActDef("starrelu", StarReLU, 2))
ACTS.add("squaredrelu", ActDef("squaredrelu", SquaredReLU, 0))


def build_norm(name: str, channels: int, layout: str) -> nn.Module:
    norm = NORMS.get(name)
    return norm.tokens(channels) if layout == "tokens" else norm.nchw(channels)


def build_act(name: str) -> nn.Module:
    return ACTS.get(name).factory()
