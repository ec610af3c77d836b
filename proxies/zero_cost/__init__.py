"""Zero-cost proxies: score an untrained ``nn.Module`` on one batch, by registered name.

Importing the package registers grad_norm, jacob_cov, params and snip. In MetaFormer spaces
snip and grad_norm mostly measure size: report ``params`` (and MACs) beside them.
"""

from __future__ import annotations

from proxies.zero_cost import baselines, jacob_cov, saliency  # noqa: F401
from proxies.zero_cost._registry import (
    ZeroCostFn,
    get_zero_cost,
    list_zero_cost,
    register_zero_cost,
    zero_cost_score,
)

__all__ = [
    "ZeroCostFn",
    "get_zero_cost",
    "list_zero_cost",
    "register_zero_cost",
    "zero_cost_score",
]
