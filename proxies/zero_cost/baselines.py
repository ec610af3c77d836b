"""Size baselines to report beside every zero-cost proxy (MACs come from nas.models.cost)."""

from __future__ import annotations

import torch
from torch import nn

from proxies.zero_cost._registry import register_zero_cost

__all__ = ["params"]


@register_zero_cost("params")
def params(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Number of trainable parameters (shared ones once); batch unused."""
    return float(sum(p.numel() for p in model.parameters() if p.requires_grad))
