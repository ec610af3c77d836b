"""Registry of zero-cost proxies by name, and the one entry point that scores a model with one.

Every proxy is a function ``fn(model, images, labels) -> float`` registered with
:func:`register_zero_cost`. :func:`zero_cost_score` hands it a private deep copy of the model, in
train mode (the mode a freshly built network is in, so BatchNorm uses batch statistics and
dropout is live, seeded; a proxy may switch its copy to eval, as synflow does), with ``images``
and ``labels`` moved to the model's device and the images cast to its floating dtype, under a
torch RNG seeded with ``seed`` and forked from the caller's. The caller's model is therefore
never touched: values, dtype, device, train/eval mode, ``requires_grad``, ``.grad`` and hooks
stay as they were, and the global RNG state too. A non-finite score raises
:class:`ZeroCostError` instead of being returned.
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from proxies.errors import ZeroCostError

__all__ = ["ZeroCostFn", "register_zero_cost", "list_zero_cost", "get_zero_cost",
           "zero_cost_score"]

ZeroCostFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], float]  # (copy, images, labels)

_PROXIES: dict[str, ZeroCostFn] = {}


def register_zero_cost(name: str | None = None) -> Callable[[ZeroCostFn], ZeroCostFn]:
    """Decorator registering a proxy under ``name`` (default: the function's name).

    Registering a name twice warns and keeps the newer function (timm ``register_model``).
    """

    def decorate(fn: ZeroCostFn) -> ZeroCostFn:
        key = name or fn.__name__
        if key in _PROXIES:
            warnings.warn(f"overwriting zero-cost proxy {key!r}", stacklevel=2)
        _PROXIES[key] = fn
        return fn

    return decorate


def list_zero_cost(pattern: str = "*") -> list[str]:
    """Registered proxy names matching the shell-style ``pattern``, sorted."""
    return sorted(n for n in _PROXIES if fnmatch.fnmatchcase(n, pattern))


def get_zero_cost(name: str) -> ZeroCostFn:
    """The proxy registered under ``name``; :class:`ZeroCostError` listing the known ones."""
    try:
        return _PROXIES[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), list(_PROXIES), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ZeroCostError(f"unknown zero-cost proxy {name!r}; known: "
                            f"{', '.join(list_zero_cost())}{hint}") from None


def zero_cost_score(name: str, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                    seed: int = 0) -> float:
    """Score ``model`` with the zero-cost proxy ``name`` on one batch; higher means "better".

    Args:
        name: a registered proxy (:func:`list_zero_cost`).
        model: any ``nn.Module`` mapping ``images`` to (B, num_classes) logits. It is not
            modified: the proxy runs on a deep copy (so scoring needs memory for one more copy).
        images: (B, ...) float batch; data-free proxies (synflow, params) use only its shape.
        labels: (B,) int64 class ids; only the loss-based proxies (grad_norm, snip) use them.
        seed: seeds torch's RNG for the proxy (random inputs, dropout); the caller's RNG state
            is restored afterwards. The same seed, model and batch give the same score.

    Returns:
        The score as a Python float, always finite.

    Raises:
        ZeroCostError: unknown name, a model without the layers the proxy reads, or a
            non-finite score (the message says which and why).

    Example:
        >>> zero_cost_score("naswot", model, images, labels, seed=0)  # doctest: +SKIP
        812.4
    """
    fn = get_zero_cost(name)
    if images.ndim < 1 or labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ZeroCostError(f"labels must be 1-D with one entry per image; got images "
                            f"{tuple(images.shape)} and labels {tuple(labels.shape)}")
    work = _private_copy(model)
    images, labels = _to_model(work, images, labels)
    with _seeded(seed):
        score = float(fn(work, images, labels))
    if not math.isfinite(score):
        raise ZeroCostError(f"zero-cost proxy {name!r} gave {score} for this "
                            f"{type(model).__name__}; no finite score exists for it")
    return score


# --------------------------------------------------------------------------- helpers


def _private_copy(model: nn.Module) -> nn.Module:
    """A deep copy in train mode with no gradients, free for a proxy to modify."""
    work = copy.deepcopy(model)
    work.train()
    for p in work.parameters():
        p.grad = None
    return work


def _to_model(model: nn.Module, images: torch.Tensor,
              labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch on the model's device, images in its floating dtype (float32 if it has none)."""
    tensors = [*model.parameters(), *model.buffers()]
    device = tensors[0].device if tensors else images.device
    dtype = next((t.dtype for t in tensors if t.is_floating_point()), torch.float32)
    return images.to(device=device, dtype=dtype), labels.to(device=device)


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU (and CUDA) RNG inside, restore the caller's RNG state outside."""
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield
