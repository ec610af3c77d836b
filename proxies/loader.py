"""FFCV loaders over a prepared dataset: normalized float32 NCHW images and int64 labels."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from proxies.beton import IMAGE_FIELD, LABEL_FIELD, check_beton
from proxies.datasets import MIN_PIXEL_STD, DatasetInfo
from proxies.errors import DatasetError
from proxies.ffcv_import import import_ffcv

if TYPE_CHECKING:
    from ffcv.loader import Loader


def make_loader(info: DatasetInfo, split: str, *, batch_size: int, shuffle: bool, seed: int = 0,
                device: str | torch.device = "cpu", drop_last: bool = False,
                num_workers: int = 1, channels_last: bool = False,
                resolution: int | None = None) -> Loader:
    """An FFCV Loader yielding (images float32 (B,3,R,R) normalized, labels int64 (B,)).

    R is `resolution`, or `info.resolution` when None. Raw images stored at another side are
    resized per batch (bilinear, antialiased); variable-size JPEGs (ImageFolder) are decoded
    straight to R, centre-cropped to a square.

    Order is RANDOM seeded by `seed` (+ epoch: FFCV orders epoch e with seed + e, so derive
    seeds with `data_seed` to keep runs independent) when `shuffle`, else SEQUENTIAL. Labels are
    views into a ring of FFCV buffers that is reused a few batches later: clone them to keep
    them. Note FFCV sets torch.set_num_threads(num_workers) when the loader is built and at
    the start of every epoch.
    """
    import_ffcv()
    import numba
    from ffcv.fields.decoders import CenterCropRGBImageDecoder, IntDecoder, SimpleRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import Convert, Squeeze, ToDevice, ToTensor, ToTorchImage
    from torchvision.transforms import Normalize

    from proxies.ffcv_ops import TorchOp

    path, num_samples = split_file(info, split)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DatasetError(f"batch_size must be a positive int, got {batch_size!r}")
    max_workers = numba.config.NUMBA_NUM_THREADS
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) \
            or not 1 <= num_workers <= max_workers:
        raise DatasetError(f"num_workers must be an int in 1..{max_workers} (numba's thread "
                           f"limit, NUMBA_NUM_THREADS), got {num_workers!r}")
    side = info.resolution if resolution is None else resolution
    if isinstance(side, bool) or not isinstance(side, int) or not 8 <= side <= 512:
        raise DatasetError(f"resolution must be an int in 8..512 or None, got {side!r}")
    check_beton(path, num_samples)
    device = torch.device(device)  # FFCV reads `.type` off it: a plain string would crash

    image_pipeline = [
        SimpleRGBImageDecoder() if info.stored_side is not None
        else CenterCropRGBImageDecoder((side, side), ratio=1.0),
        ToTensor(),
        ToDevice(device, non_blocking=True),
        # channels_last=False would copy into a buffer FFCV allocates on the CPU even when the
        # batch is on CUDA; the channels-last view stays on the device, made NCHW below.
        ToTorchImage(channels_last=True),
        Convert(torch.float32),
    ]
    if info.stored_side is not None and info.stored_side != side:
        image_pipeline.append(TorchOp(functools.partial(_resize, side=side)))
    # a channel constant over the train split (std 0) is only centred, not divided by zero
    std = [max(float(v), MIN_PIXEL_STD) for v in info.std]
    image_pipeline.append(TorchOp(Normalize(mean=list(info.mean), std=std)))
    if not channels_last:
        image_pipeline.append(TorchOp(torch.Tensor.contiguous))
    label_pipeline = [
        IntDecoder(),  # int64
        ToTensor(),
        Squeeze(1),  # (B, 1) -> (B,); a bare Squeeze() would turn a last batch of 1 into 0-d
        ToDevice(device, non_blocking=True),
    ]
    try:
        return Loader(
            path,
            batch_size=batch_size,
            num_workers=num_workers,
            os_cache=True,
            order=OrderOption.RANDOM if shuffle else OrderOption.SEQUENTIAL,
            seed=seed,
            pipelines={IMAGE_FIELD: image_pipeline, LABEL_FIELD: label_pipeline},
            drop_last=drop_last,
        )
    except (ValueError, TypeError, KeyError, AssertionError, OSError) as e:
        raise DatasetError(f"cannot open {path} with FFCV ({type(e).__name__}: {e}); "
                           "delete its directory (or call prepare_dataset again)") from None


def _resize(images: torch.Tensor, side: int) -> torch.Tensor:
    """A float (B, 3, H, W) batch resized to (B, 3, side, side), bilinear and antialiased."""
    return F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False,
                         antialias=True)


def split_file(info: DatasetInfo, split: str) -> tuple[str, int]:
    """(.beton path, number of examples) of `split`; DatasetError for an unknown split."""
    return info.split(split)


def data_seed(seed: int) -> int:
    """The FFCV order seed for a run seeded `seed`.

    FFCV shuffles epoch e with `seed + e`, so plain consecutive seeds would replay each other's
    epoch orders shifted by one. Hashing the seed through numpy's SeedSequence gives order seeds
    ~2**31 apart on average, so no two runs share an epoch order. (Repeats get their own run
    seeds from `proxies.run_seed`.)
    """
    return int(np.random.SeedSequence([seed, 0, 0x5EED]).generate_state(1)[0] >> 1)
