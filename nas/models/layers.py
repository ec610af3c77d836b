"""Norms and activations, registered by name; each norm exists in both layouts.

The built-in entries take their factories from ``portable.py`` (the model code an export ships);
a norm or activation registered elsewhere works in the project but cannot be exported.

A stage's layout is set by its mixer: NCHW for convolution-like mixers, (B, N, C) tokens for
attention-like ones. A norm name means one operation (e.g. "LayerNorm over channels"), and the
builder picks the class for the stage's layout, so a norm can never normalise the wrong axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from nas.models import portable
from nas.models._registry import Registry

__all__ = ["NormDef", "ActDef", "NORMS", "ACTS", "build_norm", "build_act", "GroupNorm1Tokens",
           "BatchNormTokens"]

GroupNorm1Tokens = portable.GroupNorm1Tokens  # (B, N, C) GroupNorm(1); source in portable.py
BatchNormTokens = portable.BatchNormTokens  # (B, N, C) BatchNorm


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


def _norm(name: str, ppc: int, description: str) -> None:
    """Register the built-in norm ``name`` with its factories from ``portable.NORMS``."""
    nchw, tokens = portable.NORMS[name]
    NORMS.add(name, NormDef(name, nchw, tokens, ppc, description))


def _act(name: str, params: int) -> None:
    ACTS.add(name, ActDef(name, portable.ACTS[name], params))


_norm("gn1", 2, "GroupNorm(1) with bias, eps 1e-5: PoolFormer v1's 'modified LayerNorm'")
_norm("gn1_nobias", 1,
      "GroupNorm(1) without bias, eps 1e-6: IdentityFormer/RandFormer/PoolFormerV2")
_norm("ln", 2, "LayerNorm over channels with bias, eps 1e-6")
_norm("ln_nobias", 1, "LayerNorm over channels without bias, eps 1e-6: ConvFormer/CAFormer")
_norm("bn", 2, "BatchNorm over channels")

_act("gelu", 0)
_act("relu", 0)
_act("silu", 0)
_act("starrelu", 2)
_act("squaredrelu", 0)


def build_norm(name: str, channels: int, layout: str) -> nn.Module:
    norm = NORMS.get(name)
    return norm.tokens(channels) if layout == "tokens" else norm.nchw(channels)


def build_act(name: str) -> nn.Module:
    return ACTS.get(name).factory()
