"""The `digits` dataset: scikit-learn's bundled 8x8 handwritten digits, upsampled to RGB."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from proxies.registry import RawDataset, register_dataset

_MAX_PIXEL = 16.0  # load_digits() pixel values lie in 0..16


@register_dataset("digits")
def build_digits(resolution: int) -> RawDataset:
    """1797 images, 10 classes; bilinear upsampling to `resolution`, grey replicated to RGB."""
    from sklearn.datasets import load_digits  # ships with scikit-learn, no download

    bunch = load_digits()
    grey = torch.from_numpy(bunch.images.astype(np.float32) * (255.0 / _MAX_PIXEL))
    grey = grey.unsqueeze(1)  # (N, 1, 8, 8)
    if resolution != grey.shape[-1]:
        grey = F.interpolate(grey, size=(resolution, resolution), mode="bilinear",
                             align_corners=False)
    grey = grey.round().clamp_(0, 255).to(torch.uint8)
    images = grey.squeeze(1).unsqueeze(-1).expand(-1, -1, -1, 3)  # (N, R, R, 3)
    return RawDataset(
        images=np.ascontiguousarray(images.numpy()),
        labels=bunch.target.astype(np.int64),
        num_classes=10,
    )
