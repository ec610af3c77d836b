"""jacob_cov: correlation of input Jacobians across a batch (NASWOT v1, Mellor et al. 2020).

https://arxiv.org/abs/2006.04647v1, as in ``measures/jacob_cov.py`` of
SamsungLabs/zero-cost-nas: J_n = d(sum of model(x)_n) / d x_n, C = corrcoef of the rows J_n,
score = -sum_i [log(lambda_i + k) + 1 / (lambda_i + k)] over the eigenvalues of C, k = 1e-5.
Higher means less correlated Jacobians. Eigenvalues come from ``eigvalsh`` (C is symmetric;
the reference's ``eig`` can return complex roundoff) and are clipped at 0 against roundoff. A
nearly singular C (more images than independent Jacobian directions) gives a large negative
but finite score. In train mode with BatchNorm the rows mix images, as in the reference.
"""

from __future__ import annotations

import torch
from torch import nn

from proxies.errors import ZeroCostError
from proxies.zero_cost._registry import register_zero_cost

__all__ = ["jacob_cov"]

K = 1e-5  # eigenvalue offset of the reference implementation


@register_zero_cost("jacob_cov")
def jacob_cov(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """-sum[log(lambda + k) + 1/(lambda + k)] of corrcoef(input Jacobians); labels unused."""
    if images.shape[0] < 2:
        raise ZeroCostError(f"jacob_cov correlates images, so it needs at least 2; "
                            f"got {images.shape[0]}")
    model.requires_grad_(False)  # only the input gradient is needed
    x = images.detach().clone().requires_grad_(True)
    out = model(x)
    if not out.requires_grad:
        raise ZeroCostError("jacob_cov: the model's output does not depend on its input")
    out.backward(torch.ones_like(out))
    corr = torch.corrcoef(x.grad.reshape(x.shape[0], -1).double())
    if not torch.isfinite(corr).all():
        raise ZeroCostError("jacob_cov: an input Jacobian is constant (zero variance), so "
                            "its correlation is undefined")
    eig = torch.linalg.eigvalsh(corr).clamp_min(0)
    return float(-(torch.log(eig + K) + 1 / (eig + K)).sum())
