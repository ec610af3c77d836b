"""Score freshly built models with several proxies on one fixed training batch."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from proxies.datasets import DatasetInfo
from proxies.loader import make_loader
from proxies.zero_cost._registry import get_zero_cost, zero_cost_score

__all__ = ["first_batch", "zero_cost_scores"]


def first_batch(info: DatasetInfo, *, batch_size: int = 64,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The first batch of the train split in the order seeded by ``seed``, on the CPU.

    The order is shuffled (deterministically) so the batch mixes classes whatever order the
    split was written in. Torch's thread count, which FFCV resets, is restored.
    """
    threads = torch.get_num_threads()
    try:
        loader = make_loader(info, "train", batch_size=batch_size, shuffle=True, seed=seed)
        batches = iter(loader)
        try:
            images, labels = next(batches)
            return images.clone(), labels.clone()  # FFCV reuses its buffers
        finally:
            batches.close()  # stop FFCV's prefetching thread
    finally:
        torch.set_num_threads(threads)


def zero_cost_scores(model_factory: Callable[[], nn.Module], info: DatasetInfo,
                     names: Iterable[str], *, batch_size: int = 64,
                     seed: int = 0) -> dict[str, float]:
    """Each proxy in ``names`` on a new ``model_factory()`` model and one fixed train batch.

    Args:
        model_factory: returns a new model on each call (seeded by the caller, so every call
            builds the same weights); the batch is moved to the model's device.
        info: a prepared dataset (``prepare_dataset``); its train split gives the batch.
        names: registered proxy names; all are checked before any data is read.
        batch_size: images in the batch.
        seed: the batch's order seed and the proxies' RNG seed.

    Returns:
        ``{name: score}`` in the order of ``names``.

    Example:
        >>> zero_cost_scores(lambda: build(spec, seed=0), info, ["params", "naswot"])
        ... # doctest: +SKIP
        {'params': 81234.0, 'naswot': 812.4}
    """
    names = list(names)
    for name in names:
        get_zero_cost(name)
    images, labels = first_batch(info, batch_size=batch_size, seed=seed)
    return {name: zero_cost_score(name, model_factory(), images, labels, seed=seed)
            for name in names}
