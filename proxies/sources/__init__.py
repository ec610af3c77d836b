"""Readers of users' own images (CIFAR pickles, ImageFolder trees, .npz arrays), registered."""

from __future__ import annotations

from proxies.sources import cifar, image_folder, npz  # noqa: F401  (register the sources)
from proxies.sources._common import content_hash

__all__ = ["content_hash"]
