"""Deterministic stratified train/val split."""

from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, val_fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train_indices, val_indices); each class puts round(n_c * val_fraction) in val.

    Uses only numpy's PCG64 generator, so the split is identical on every machine.
    """
    rng = np.random.default_rng(seed)
    val_parts = []
    for cls in np.unique(labels):  # sorted, so the rng is consumed in a fixed order
        members = np.flatnonzero(labels == cls)
        n_val = int(round(len(members) * val_fraction))
        val_parts.append(rng.permutation(members)[:n_val])
    val = np.sort(np.concatenate(val_parts)) if val_parts else np.empty(0, np.int64)
    is_val = np.zeros(len(labels), dtype=bool)
    is_val[val] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)
