"""Gradient saliencies of Conv/Linear weights on one labelled batch: grad_norm and snip.

Both follow SamsungLabs/zero-cost-nas (Abdelfattah et al., ICLR 2021,
https://arxiv.org/abs/2101.08134), which scores only convolution and linear weights. In a
MetaFormer that leaves out LayerScale/ResScale, StarReLU scale/bias and norm weights; in the
MetaFormer spaces measured in the reference notes both proxies track #params (Spearman ~0.95),
so report them beside ``params``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from proxies.errors import ZeroCostError
from proxies.zero_cost._registry import register_zero_cost

__all__ = ["WEIGHT_LAYERS", "scored_weights", "cross_entropy", "grad_norm", "snip"]

WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)  # layers whose .weight is scored


def scored_weights(model: nn.Module, proxy: str) -> list[nn.Parameter]:
    """The weights of every Conv/Linear layer, set to require grad (``model`` is a copy).

    Frozen weights are scored too: the proxy rates the architecture, not a training setup.
    """
    weights = [m.weight for m in model.modules() if isinstance(m, WEIGHT_LAYERS)]
    if not weights:
        raise ZeroCostError(f"{proxy} scores Conv/Linear weights, and this "
                            f"{type(model).__name__} has none")
    for w in weights:
        w.requires_grad_(True)
    return weights


def cross_entropy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``model(images)`` (at least float32), checking the logits fit."""
    logits = model(images)
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise ZeroCostError(f"the model must return (B, num_classes) logits for B = "
                            f"{labels.shape[0]} images; got shape {tuple(logits.shape)}")
    if labels.numel() and int(labels.max()) >= logits.shape[1]:
        raise ZeroCostError(f"label {int(labels.max())} is out of range for a model with "
                            f"{logits.shape[1]} outputs")
    return F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), labels)


def _loss_gradients(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                    proxy: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, dL/dweight) for every scored weight; unused layers get a zero gradient."""
    weights = scored_weights(model, proxy)
    cross_entropy(model, images, labels).backward()
    return [(w.detach(), w.grad if w.grad is not None else torch.zeros_like(w)) for w in weights]


@register_zero_cost("grad_norm")
def grad_norm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Sum over Conv/Linear layers of the L2 norm of dL/dW (cross-entropy, one batch)."""
    pairs = _loss_gradients(model, images, labels, "grad_norm")
    return float(sum(g.double().norm() for _, g in pairs))


@register_zero_cost("snip")
def snip(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Sum over Conv/Linear weights of |W * dL/dW| (the gradient w.r.t. a unit mask on W)."""
    pairs = _loss_gradients(model, images, labels, "snip")
    return float(sum((w.double() * g.double()).abs().sum() for w, g in pairs))
