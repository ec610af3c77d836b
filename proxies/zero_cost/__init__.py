"""Zero-cost proxies: score an untrained ``nn.Module`` on one batch, by registered name.

Importing the package registers grad_norm, jacob_cov, naswot, params, snip, synflow and
synflow_ones. In MetaFormer spaces synflow, snip and grad_norm mostly measure size: report
``params`` (and MACs) beside them.
"""

from __future__ import annotations

from proxies.zero_cost import baselines, jacob_cov, naswot, saliency, synflow  # noqa: F401
from proxies.zero_cost._registry import (
    ZeroCostFn,
    get_zero_cost,
    list_zero_cost,
    register_zero_cost,
    zero_cost_score,
)
from proxies.zero_cost.naswot import activation_types, naswot_units
from proxies.zero_cost.scores import first_batch, zero_cost_scores

__all__ = [
    "ZeroCostFn",
    "activation_types",
    "first_batch",
    "get_zero_cost",
    "list_zero_cost",
    "naswot_units",
    "register_zero_cost",
    "zero_cost_score",
    "zero_cost_scores",
]
