"""Deterministic stratified splits (train / val, or train / val / test)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def stratified_split(labels: np.ndarray, fractions: float | Sequence[float],
                     seed: int) -> tuple[np.ndarray, ...]:
    """Sorted index arrays (train, part_1, ..., part_k) for `fractions` (f_1, ..., f_k).

    Each class puts round(n_c * f_j) of its members in part j (in order, taken from one seeded
    permutation of the class) and the rest in train. A single float gives (train, val). Uses
    only numpy's PCG64 generator, so the split is identical on every machine.
    """
    fracs = (float(fractions),) if np.isscalar(fractions) else tuple(map(float, fractions))
    rng = np.random.default_rng(seed)
    part_of = np.zeros(len(labels), dtype=np.int64)  # 0 = train, j = part j
    for cls in np.unique(labels):  # sorted, so the rng is consumed in a fixed order
        members = rng.permutation(np.flatnonzero(labels == cls))
        start = 0
        for j, f in enumerate(fracs, start=1):
            n = int(round(len(members) * f))
            part_of[members[start:start + n]] = j
            start += n
    return tuple(np.flatnonzero(part_of == j) for j in range(len(fracs) + 1))
