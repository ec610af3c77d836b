"""Synaptic flow (Tanaka et al., NeurIPS 2020, https://arxiv.org/abs/2006.05467), data-free.

Reference: ``measures/synflow.py`` of SamsungLabs/zero-cost-nas. The network is linearised in
float64: every floating state-dict tensor (parameters *and* buffers, e.g. StarReLU scale/bias,
LayerScale, BatchNorm running statistics) is replaced by its absolute value, one positive input
goes through, R = sum(output) is back-propagated, and the score is the sum over Conv/Linear
weights of |W * dR/dW|. The reference restores the signs and casts back to float32 afterwards;
here the proxy runs on the private deep copy :func:`zero_cost_score` makes, so the caller's
model keeps its values and dtype exactly (a bf16 model stays bf16).

Mode: the copy is put in eval mode. Norms with running statistics (BatchNorm) then act as fixed
affine maps, close to the identity at initialisation (running mean 0, var 1), which is near the
reference's ``bn=False`` (BatchNorm left out); with batch statistics a single input would be
normalised to its bias. Dropout and drop-path are off.

**The pooling pitfall, and the choice made here.** PoolFormer's token mixer is
``Pooling(x) = AvgPool2d(k, 1, k // 2, count_include_pad=False)(x) - x``, which is exactly 0 on a
spatially constant map. With the textbook all-ones input every feature map stays spatially
constant except where zero padding of the stem and downsampling convs reaches, so the pooling
mixers pass no signal in the interior of any map: a PoolFormer block scores as if its token
mixer were removed (``pool_size=1`` makes that exact), and what remains depends on padding
borders, not on token mixing. At 32 px most of the small late-stage maps are border, which
partly hides the problem but makes the score a padding artefact.

``synflow`` therefore feeds one **fixed non-constant positive input**: uniform noise on [0, 2),
mean 1 like the all-ones tensor, drawn from the seeded RNG (so the score is deterministic given
``seed``). It is still data-free and still positive, so on a net of positive linear maps it is
a positively weighted path sum like the original; through pooling it carries the input's
spatial variation. Note that neither input makes a MetaFormer linear: LayerNorm and
``avgpool - x`` produce mixed signs, so the nonlinearities still cut paths. ``synflow_ones``
keeps the textbook all-ones input for comparison with published numbers; do not use it to rank
architectures with pooling mixers.
"""

from __future__ import annotations

import torch
from torch import nn

from proxies.zero_cost._registry import register_zero_cost
from proxies.zero_cost.saliency import scored_weights

__all__ = ["synflow", "synflow_ones", "synflow_score"]


def synflow_score(model: nn.Module, inputs: torch.Tensor) -> float:
    """Synflow of ``model`` (a private copy: it is changed in place) for a positive ``inputs``."""
    model.eval().double()
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    weights = scored_weights(model, "synflow")
    model(inputs.to(device=weights[0].device, dtype=torch.float64)).sum().backward()
    with torch.no_grad():
        return float(sum((w * w.grad).abs().sum() for w in weights if w.grad is not None))


@register_zero_cost("synflow")
def synflow(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Synflow on one uniform [0, 2) input of the batch's image shape (pooling-aware)."""
    inputs = 2 * torch.rand((1, *images.shape[1:]), dtype=torch.float64)
    return synflow_score(model, inputs)


@register_zero_cost("synflow_ones")
def synflow_ones(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Textbook synflow on one all-ones input; blind to pooling token mixers (see module doc)."""
    return synflow_score(model, torch.ones((1, *images.shape[1:]), dtype=torch.float64))
