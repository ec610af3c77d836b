"""The `clutter` dataset: scikit-learn's digits at random positions and scales among clutter.

Plain `digits` (centred 8x8 digits) is too easy to tell architectures apart: every model reaches
95-98% and the differences between architectures are no larger than seed noise. Here each image
is a 32x32 canvas holding one target digit of 20-28 px at a random position, 2-4 fragments of
other digits (random crops of the same kind of upscaled digit) as clutter, and light Gaussian
noise. Recognising the digit needs its whole shape and its context, so token mixing, depth and
width matter, and accuracies stay well below 100%.

The 1,797 source digits are first split (stratified, seeded) into disjoint train / val / test
pools, so no source digit, as target or clutter, appears in two splits. From them 6,000 / 2,000 /
2,000 images are rendered with a fixed seed: the dataset is identical on every machine.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from proxies.registry import RawDataset, register_dataset
from proxies.splits import stratified_split

CANVAS = 32  # pixels; images are rendered at this side, then resampled to the asked resolution
SIZES = (20, 28)  # inclusive range of target-digit sides, pixels
CLUTTER = (2, 4)  # inclusive range of clutter fragments per image
FRAGMENT = (7, 14)  # inclusive range of clutter-fragment sides, pixels
NOISE = 0.08  # std of additive Gaussian noise, in units of full intensity
COUNTS = {"train": 6000, "val": 2000, "test": 2000}  # images rendered per split
POOL_FRACTIONS = (0.2, 0.2)  # fractions of source digits in the val and test pools
SEED = 20261123  # fixed: the dataset is part of the engine's definition
_MAX_PIXEL = 16.0  # load_digits() pixel values lie in 0..16


@register_dataset("clutter")
def build_clutter(resolution: int) -> RawDataset:
    """10,000 cluttered-digit images (6,000 / 2,000 / 2,000 with disjoint sources), 10 classes."""
    from sklearn.datasets import load_digits  # ships with scikit-learn, no download

    bunch = load_digits()
    digits = bunch.images.astype(np.float32) / _MAX_PIXEL  # (N, 8, 8) in 0..1
    labels = bunch.target.astype(np.int64)
    pools = stratified_split(labels, POOL_FRACTIONS, SEED)
    scaled = _upscaled(digits)
    images, out_labels, splits = [], [], []
    for split_id, (split, pool) in enumerate(zip(COUNTS, pools)):
        rng = np.random.default_rng([SEED, split_id])
        imgs, labs = render(scaled, labels, pool, COUNTS[split], rng)
        images.append(imgs)
        out_labels.append(labs)
        splits.append(np.full(len(labs), split_id, dtype=np.int8))
    grey = np.concatenate(images)  # (N, CANVAS, CANVAS) float in 0..1
    if resolution != CANVAS:
        t = torch.from_numpy(grey).unsqueeze(1)
        grey = F.interpolate(t, size=(resolution, resolution), mode="bilinear",
                             align_corners=False, antialias=resolution < CANVAS)[:, 0].numpy()
    u8 = np.clip(np.rint(grey * 255.0), 0, 255).astype(np.uint8)
    return RawDataset(images=np.ascontiguousarray(np.repeat(u8[..., None], 3, axis=-1)),
                      labels=np.concatenate(out_labels), num_classes=10,
                      splits=np.concatenate(splits))


def _upscaled(digits: np.ndarray) -> dict[int, np.ndarray]:
    """Every source digit bilinearly upscaled to each side in SIZES: side -> (N, side, side)."""
    t = torch.from_numpy(digits).unsqueeze(1)
    return {s: F.interpolate(t, size=(s, s), mode="bilinear", align_corners=False)[:, 0]
            .clamp_(0, 1).numpy() for s in range(SIZES[0], SIZES[1] + 1)}


def render(scaled: dict[int, np.ndarray], labels: np.ndarray, pool: np.ndarray, count: int,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`count` canvases whose targets and clutter are drawn from the source indices in `pool`."""
    images = np.zeros((count, CANVAS, CANVAS), dtype=np.float32)
    targets = rng.choice(pool, size=count)
    for i, src in enumerate(targets):
        canvas = images[i]
        for _ in range(rng.integers(CLUTTER[0], CLUTTER[1] + 1)):
            other = scaled[int(rng.integers(SIZES[0], SIZES[1] + 1))][rng.choice(pool)]
            f = int(rng.integers(FRAGMENT[0], FRAGMENT[1] + 1))
            oy, ox = rng.integers(0, other.shape[0] - f + 1, size=2)
            y, x = rng.integers(0, CANVAS - f + 1, size=2)
            frag = other[oy:oy + f, ox:ox + f] * rng.uniform(0.5, 1.0)
            np.maximum(canvas[y:y + f, x:x + f], frag, out=canvas[y:y + f, x:x + f])
        digit = scaled[int(rng.integers(SIZES[0], SIZES[1] + 1))][src]
        s = digit.shape[0]
        y, x = rng.integers(0, CANVAS - s + 1, size=2)
        np.maximum(canvas[y:y + s, x:x + s], digit * rng.uniform(0.7, 1.0),
                   out=canvas[y:y + s, x:x + s])
    images += rng.normal(0.0, NOISE, size=images.shape).astype(np.float32)
    return np.clip(images, 0.0, 1.0), labels[targets]
