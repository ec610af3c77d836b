"""make_loader / shared_loader: shapes, dtypes, normalization, coverage, order, errors."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest
import torch

from proxies import DatasetError, DatasetInfo, data_seed, make_loader
from proxies.loader_cache import shared_loader
from proxies.registry import get_builder
from proxies.splits import stratified_split


@pytest.fixture(scope="module")
def raw_split(digits: DatasetInfo):
    """(images, labels) of each split, rebuilt from the registry independently of the files."""
    raw = get_builder("digits")(digits.resolution)
    parts = stratified_split(raw.labels, (0.2, 0.2), seed=0)
    return {split: (raw.images[idx], raw.labels[idx])
            for split, idx in zip(("train", "val", "test"), parts)}


def _to_uint8(images: torch.Tensor, info: DatasetInfo) -> np.ndarray:
    """Undo Normalize: float NCHW -> uint8 NHWC."""
    mean = torch.tensor(info.mean).view(1, 3, 1, 1)
    std = torch.tensor(info.std).view(1, 3, 1, 1)
    pixels = (images * std + mean).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).contiguous().numpy()


def _digests(images: np.ndarray) -> list[str]:
    return [hashlib.sha1(img.tobytes()).hexdigest() for img in images]


def _epoch(loader, info: DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for x, y in loader:
        images.append(_to_uint8(x, info))
        labels.append(y.clone())  # labels live in a reused FFCV buffer
    return np.concatenate(images), torch.cat(labels).numpy()


def test_batches_are_normalized_float_nchw_and_int64(digits: DatasetInfo):
    loader = make_loader(digits, "train", batch_size=64, shuffle=True, drop_last=True)
    assert len(loader) == digits.num_train // 64
    xs = []
    for x, y in loader:
        assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32
        assert x.device.type == "cpu" and x.is_contiguous()
        assert y.shape == (64,) and y.dtype == torch.int64
        assert 0 <= int(y.min()) and int(y.max()) <= 9
        xs.append(x)
    everything = torch.cat(xs)
    assert abs(everything.mean().item()) < 0.05  # normalized with train-split statistics
    assert abs(everything.std().item() - 1) < 0.05


def test_val_epoch_covers_every_example_once_in_order(digits: DatasetInfo, raw_split):
    loader = make_loader(digits, "val", batch_size=100, shuffle=False)
    assert len(loader) == -(-digits.num_val // 100)
    for _ in range(2):  # and again on the next epoch
        images, labels = _epoch(loader, digits)
        expected_images, expected_labels = raw_split["val"]
        np.testing.assert_array_equal(labels, expected_labels)
        np.testing.assert_array_equal(images, expected_images)


def test_shuffled_train_epoch_is_a_seeded_permutation(digits: DatasetInfo, raw_split):
    def order(seed: int) -> list[list[str]]:
        loader = make_loader(digits, "train", batch_size=128, shuffle=True, seed=seed)
        return [_digests(_epoch(loader, digits)[0]) for _ in range(2)]

    first, second = order(seed=0)
    expected = Counter(_digests(raw_split["train"][0]))
    assert Counter(first) == expected and Counter(second) == expected
    assert first != second  # a new order every epoch
    assert order(seed=0) == [first, second]  # the same seed gives the same orders
    assert order(seed=1)[0] != first


def test_independent_seeds_share_no_epoch_order(digits: DatasetInfo):
    """FFCV orders epoch e with seed + e: raw seeds 0 and 1 replay each other's epochs shifted
    by one. data_seed() spreads run seeds apart, so two runs never share an epoch order."""
    def orders(seed: int, epochs: int = 3) -> list[tuple[int, ...]]:
        loader = make_loader(digits, "train", batch_size=64, shuffle=True, seed=seed)
        return [tuple(torch.cat([y.clone() for _, y in loader]).tolist()) for _ in range(epochs)]

    raw0, raw1 = orders(0), orders(1)
    assert raw0[1] == raw1[0]  # the pitfall itself, so this test notices if FFCV changes
    runs = [orders(data_seed(s)) for s in (0, 1, 2)]
    epochs = [e for run in runs for e in run]
    assert len(set(epochs)) == len(epochs), "two epochs of different runs share an order"
    assert len({data_seed(s) for s in range(1000)}) == 1000


def test_test_split_is_served(digits: DatasetInfo, raw_split):
    images, labels = _epoch(make_loader(digits, "test", batch_size=100, shuffle=False), digits)
    np.testing.assert_array_equal(labels, raw_split["test"][1])
    np.testing.assert_array_equal(images, raw_split["test"][0])


def test_last_batch_of_one_keeps_its_batch_dimension(digits: DatasetInfo):
    batch = digits.num_val - 1
    batches = list(make_loader(digits, "val", batch_size=batch, shuffle=False))
    assert [tuple(y.shape) for _, y in batches] == [(batch,), (1,)]
    assert batches[-1][0].shape == (1, 3, 32, 32)


def test_channels_last_gives_the_same_values(digits: DatasetInfo):
    plain = next(iter(make_loader(digits, "val", batch_size=32, shuffle=False)))[0]
    loader = make_loader(digits, "val", batch_size=32, shuffle=False, channels_last=True)
    cl = next(iter(loader))[0]
    assert cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(cl, plain)


def test_shared_loader_is_reused_and_rewound(digits: DatasetInfo):
    kwargs = dict(batch_size=256, shuffle=True, seed=3)
    first = shared_loader(digits, "train", **kwargs)
    reference = [y.clone() for _, y in first]
    again = shared_loader(digits, "train", **kwargs)
    assert again is first
    assert all(torch.equal(a, b.clone()) for a, (_, b) in zip(reference, again))
    assert shared_loader(digits, "train", **{**kwargs, "seed": 4}) is not first


@pytest.mark.parametrize("kwargs, match", [
    ({"split": "holdout"}, "split must be one of train, val, test, got 'holdout'"),
    ({"batch_size": 0}, "batch_size must be a positive int"),
    ({"num_workers": 0}, r"num_workers must be an int in 1\.\.\d+"),
    ({"num_workers": 10_000}, r"num_workers must be an int in 1\.\.\d+ \(numba"),
])
def test_bad_arguments_raise_dataset_error(digits: DatasetInfo, kwargs, match):
    args = {"split": "val", "batch_size": 8, "shuffle": False, **kwargs}
    with pytest.raises(DatasetError, match=match):
        make_loader(digits, args.pop("split"), **args)


def test_an_error_in_the_loader_thread_is_raised_in_the_loop_not_a_hang(digits, monkeypatch):
    # FFCV's thread died and the training loop waited on its queue for good (seen with an
    # all-black dataset: Normalize refused std 0), deaf to a graceful SIGTERM
    import threading

    import proxies.loader
    from proxies.ffcv_import import LoaderThreadError

    def broken(images, side):
        raise ValueError("a transform refused\nits input")

    monkeypatch.setattr(proxies.loader, "_resize", broken)
    loader = make_loader(digits, "val", batch_size=32, shuffle=False,
                         resolution=digits.resolution + 8)  # another side: _resize runs
    seen: list[BaseException] = []

    def consume() -> None:
        batches = iter(loader)
        for _ in range(2):  # asked again after the error: raised again, not a wait
            try:
                for _ in batches:
                    pass
            except BaseException as e:  # noqa: BLE001 (the test reads it)
                seen.append(e)

    worker = threading.Thread(target=consume, daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "the loop still waits on the dead loader thread"
    assert len(seen) == 2 and all(isinstance(e, LoaderThreadError) for e in seen), seen
    assert str(seen[0]) == "the data loader failed: ValueError: a transform refused its input"
    assert isinstance(seen[0].__cause__, ValueError)
    # the loader still serves a clean epoch afterwards once the transform works again
    monkeypatch.undo()
    assert sum(len(labels) for _, labels in make_loader(
        digits, "val", batch_size=32, shuffle=False)) == digits.num_val


def test_a_flat_channel_is_centred_not_divided_by_zero(digits):
    import dataclasses

    flat = dataclasses.replace(digits, std=(0.0, digits.std[1], digits.std[2]))
    images, _ = next(iter(make_loader(flat, "val", batch_size=16, shuffle=False)))
    assert torch.isfinite(images).all()


def test_the_loader_thread_patch_applies_when_ffcv_was_imported_first():
    # `import ffcv` (a user's script, benchmarks/bench_speed.py) imports the module
    # import_ffcv checks for, and used to skip the patch
    import subprocess
    import sys
    from pathlib import Path

    code = ("import ffcv; from proxies.ffcv_import import import_ffcv; import_ffcv(); "
            "from ffcv.loader.epoch_iterator import EpochIterator; "
            "print(EpochIterator.run.__name__, EpochIterator.__next__.__name__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[2], timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["run_reporting", "next_reporting"], r.stdout
