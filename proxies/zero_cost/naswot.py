"""NASWOT: log-determinant of the activation-pattern kernel (Mellor et al., ICML 2021, v2).

https://arxiv.org/abs/2006.04647; reference: ``score_networks.py`` of
BayesWatch/nas-without-training.
Each image gets a binary code c (1 where an activation's input is > 0) over all hooked units;
K = sum over units of c c^T + (1 - c)(1 - c)^T, i.e. K[i, j] = units - Hamming(c_i, c_j), and
the score is log|det K| (``slogdet``, float64).

The reference hooks modules whose *type name contains "ReLU"*. In a MetaFormer that counts
timm's ``StarReLU`` and the ``nn.ReLU`` inside it (the same input, twice) and misses ``nn.GELU``
entirely, so a Pooling+GELU net gets no hooks, K = 0 and a score of -inf. Here units are found
*by class* (:func:`activation_types`) and only the outermost activation module of a subtree is
hooked: StarReLU and SquaredReLU count once, their inner ReLU is not hooked. Its *input* is hooked
(the pre-activation, whose sign is the on/off state of ReLU-like units). A model with no such
module raises :class:`ZeroCostError`, as does a singular K (two images with identical codes).
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from proxies.errors import ZeroCostError
from proxies.zero_cost._registry import register_zero_cost

__all__ = ["activation_types", "naswot_units", "naswot"]


@lru_cache(maxsize=1)
def activation_types() -> tuple[type[nn.Module], ...]:
    """Classes of the gated (ReLU-like) activations NASWOT reads: torch's and timm's."""
    from timm.layers import activations as timm_acts  # timm is imported only when scoring
    from timm.layers import activations_me as timm_me
    from timm.models.metaformer import SquaredReLU, StarReLU

    return (
        nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU,
        nn.SiLU, nn.Mish, nn.Hardswish,
        StarReLU, SquaredReLU,
        timm_acts.GELU, timm_acts.GELUTanh, timm_acts.QuickGELU, timm_acts.Swish,
        timm_acts.Mish, timm_acts.HardSwish, timm_acts.HardMish,
        timm_me.SwishMe, timm_me.MishMe, timm_me.HardSwishMe, timm_me.HardMishMe,
    )


def naswot_units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every activation NASWOT hooks: outermost instances, in module order."""
    types = activation_types()
    units: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()  # a module shared by two parents is one unit (its hook fires per call)

    def walk(module: nn.Module, name: str) -> None:
        if id(module) in seen:
            return
        seen.add(id(module))
        if isinstance(module, types):
            units.append((name, module))  # an activation's own children are not units
            return
        for child_name, child in module.named_children():
            walk(child, f"{name}.{child_name}" if name else child_name)

    walk(model, "")
    return units


@register_zero_cost("naswot")
def naswot(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """log|det K| of the binary activation codes of one batch (labels unused)."""
    units = naswot_units(model)
    if not units:
        names = ", ".join(t.__name__ for t in activation_types())
        raise ZeroCostError(f"naswot needs activation modules to read on/off codes from, and "
                            f"this {type(model).__name__} has none (looked for: {names})")
    n = images.shape[0]
    kernel = torch.zeros((n, n), dtype=torch.float64, device=images.device)

    def record(module: nn.Module, args: tuple) -> None:
        x = args[0]
        if x.shape[0] != n:
            raise ZeroCostError(f"naswot: {type(module).__name__} saw a batch of {x.shape[0]} "
                                f"rows, expected {n}: its input must be batch-first")
        codes = (x.detach().reshape(n, -1) > 0).to(torch.float64)
        kernel.add_(codes @ codes.T).add_((1 - codes) @ (1 - codes).T)

    handles = [module.register_forward_pre_hook(record) for _, module in units]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    sign, logdet = torch.linalg.slogdet(kernel)
    if sign <= 0:
        raise ZeroCostError(f"naswot: the {n}x{n} activation kernel is singular (two images "
                            "have identical activation codes, e.g. duplicated images); "
                            "use a batch of distinct images")
    return float(logdet)
