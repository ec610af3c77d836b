"""User datasets (CIFAR pickles, ImageFolder trees, .npz): .beton round trip, resize at load,
content-hash caching and one-line errors for missing, corrupt or mismatched input."""

from __future__ import annotations

import os
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from proxies import (
    DatasetError,
    DatasetInfo,
    dataset_kinds,
    list_datasets,
    make_loader,
    prepare_dataset,
    shared_loader,
)

# FFCV's centre-crop decoder compiles imdecode for a second signature; when such a loader is
# collected, numba's dispatcher finalizer raises a harmless KeyError that pytest reports.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

# ---------------------------------------------------------------------------- input writers


def _write_cifar(root: Path, num_classes: int, train_per_class: int, test_per_class: int,
                 seed: int = 0) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """A tiny CIFAR-10 or -100 pickle folder laid out as the official one; returns (folder,
    {"train": (images HWC, labels), "test": ...})."""
    rng = np.random.default_rng(seed)
    ten = num_classes == 10
    folder = root / ("cifar-10-batches-py" if ten else "cifar-100-python")
    folder.mkdir(parents=True)
    arrays = {}
    for split, per in (("train", train_per_class), ("test", test_per_class)):
        labels = np.repeat(np.arange(num_classes), per)
        rng.shuffle(labels)
        images = rng.integers(0, 256, size=(len(labels), 32, 32, 3), dtype=np.uint8)
        arrays[split] = images, labels
    rows = {s: x.transpose(0, 3, 1, 2).reshape(len(x), -1) for s, (x, _) in arrays.items()}
    label_key = b"labels" if ten else b"fine_labels"
    names = [f"class{i}".encode() for i in range(num_classes)]
    if ten:
        files = {f"data_batch_{i + 1}": part for i, part in
                 enumerate(np.array_split(np.arange(len(arrays["train"][1])), 5))}
        for name, part in files.items():
            _dump(folder / name, {b"data": rows["train"][part],
                                  label_key: arrays["train"][1][part].tolist()})
        _dump(folder / "test_batch", {b"data": rows["test"],
                                      label_key: arrays["test"][1].tolist()})
        _dump(folder / "batches.meta", {b"label_names": names})
    else:
        for split in ("train", "test"):
            _dump(folder / split, {b"data": rows[split], label_key: arrays[split][1].tolist(),
                                   b"coarse_labels": [0] * len(rows[split])})
        _dump(folder / "meta", {b"fine_label_names": names, b"coarse_label_names": [b"all"]})
    return folder, arrays


def _dump(path: Path, obj: object) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


COLOURS = {"cat": (220, 30, 30), "dog": (30, 200, 40), "eel": (20, 40, 230)}  # RGB per class


def _write_tree(root: Path, per_class: int) -> None:
    """root/<class>/<i>.png|jpg: solid colour per class, two sizes (20x12 PNG, 24x24 JPEG)."""
    from PIL import Image

    for cls, colour in COLOURS.items():
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            if i % 2:
                Image.new("RGB", (24, 24), colour).save(root / cls / f"{i}.jpg", quality=95)
            else:
                Image.new("RGB", (20, 12), colour).save(root / cls / f"{i}.png")
        (root / cls / "notes.txt").write_text("not an image, ignored")


def _write_npz(path: Path, seed: int = 0, grey: bool = False, val: bool = True,
               **override: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (8, 8) if grey else (8, 8, 3)
    counts = {"train": 40, "val": 10, "test": 12} if val else {"train": 40, "test": 12}
    arrays = {}
    for split, n in counts.items():
        arrays[f"x_{split}"] = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
        arrays[f"y_{split}"] = np.arange(n) % 4
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return arrays


def _batches(info: DatasetInfo, split: str, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (image, label) of `split` in file order, images back in 0..255 units."""
    loader = make_loader(info, split, batch_size=64, shuffle=False, **kwargs)
    xs, ys = zip(*[(x.clone(), y.clone()) for x, y in loader])
    mean = torch.tensor(info.mean).view(1, 3, 1, 1)
    std = torch.tensor(info.std).view(1, 3, 1, 1)
    return torch.cat(xs) * std + mean, torch.cat(ys)


def _nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float()


# ---------------------------------------------------------------------------- registry


def test_kinds_list_every_dataset():
    kinds = dataset_kinds()
    assert list(kinds) == list_datasets()
    assert kinds["clutter"] == kinds["digits"] == "embedded"
    assert {n for n, k in kinds.items() if k == "path"} == {"cifar10", "cifar100",
                                                             "imagefolder", "npz"}


def test_embedded_refuses_data_path_and_path_kinds_require_it(tmp_path):
    with pytest.raises(DatasetError, match="'digits' is built in and takes no --data-path"):
        prepare_dataset("digits", tmp_path, data_path=tmp_path)
    with pytest.raises(DatasetError, match=r"pass --data-path .*cifar-10-batches-py"):
        prepare_dataset("cifar10", tmp_path)
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------- CIFAR


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory) -> tuple[Path, dict, DatasetInfo]:
    root = tmp_path_factory.mktemp("cifar10-input")
    folder, arrays = _write_cifar(root, 10, train_per_class=10, test_per_class=3)
    cache = tmp_path_factory.mktemp("cifar10-cache")
    return cache, arrays, prepare_dataset("cifar10", cache, data_path=root)  # parent works too


def test_cifar10_round_trip(cifar10):
    _, arrays, info = cifar10
    assert (info.num_train, info.num_val, info.num_test) == (80, 20, 30)  # val: 20 % of train
    assert info.num_classes == 10 and info.stored_side == 32 and info.resolution == 32
    assert info.data_hash is not None and info.data_hash in info.train_path
    images, labels = _batches(info, "test")  # official test set, in file order
    assert images.shape == (30, 3, 32, 32)
    np.testing.assert_array_equal(labels.numpy(), arrays["test"][1])
    torch.testing.assert_close(images, _nchw(arrays["test"][0]), atol=1e-3, rtol=0)
    _, train_labels = _batches(info, "train")
    _, val_labels = _batches(info, "val")
    assert Counter(val_labels.tolist()) == {c: 2 for c in range(10)}  # stratified
    assert Counter(train_labels.tolist()) == {c: 8 for c in range(10)}


def test_cifar100_fine_labels(tmp_path):
    folder, arrays = _write_cifar(tmp_path / "in", 100, train_per_class=3, test_per_class=1)
    info = prepare_dataset("cifar100", tmp_path / "cache", data_path=folder, val_fraction=0.34)
    assert info.num_classes == 100
    assert (info.num_train, info.num_val, info.num_test) == (200, 100, 100)
    images, labels = _batches(info, "test")
    np.testing.assert_array_equal(labels.numpy(), arrays["test"][1])
    torch.testing.assert_close(images, _nchw(arrays["test"][0]), atol=1e-3, rtol=0)


@pytest.mark.parametrize("side", [16, 48])
def test_resize_at_load_serves_any_side_from_one_file(cifar10, side):
    cache, arrays, info = cifar10
    folder = Path(info.data_path) / "cifar-10-batches-py"  # the folder itself, not its parent
    at_side = prepare_dataset("cifar10", cache, data_path=folder, resolution=side)
    assert at_side.resolution == side and at_side.data_hash == info.data_hash
    assert at_side.test_path == info.test_path  # one cache for every side
    images, _ = _batches(at_side, "test")
    assert images.shape == (30, 3, side, side)
    expected = F.interpolate(_nchw(arrays["test"][0]), size=(side, side), mode="bilinear",
                             align_corners=False, antialias=True)
    torch.testing.assert_close(images, expected, atol=1e-2, rtol=0)
    explicit = shared_loader(info, "test", batch_size=8, shuffle=False, resolution=side)
    assert next(iter(explicit))[0].shape == (8, 3, side, side)


# ---------------------------------------------------------------------------- ImageFolder


def _assert_colours(info: DatasetInfo, split: str, side: int) -> None:
    images, labels = _batches(info, split, resolution=side)
    assert images.shape == (info.split(split)[1], 3, side, side)
    names = sorted(COLOURS)
    for x, y in zip(images, labels):
        expected = torch.tensor(COLOURS[names[int(y)]], dtype=torch.float32)
        got = x.mean(dim=(1, 2))
        assert torch.allclose(got, expected, atol=12), (names[int(y)], got, expected)


def test_image_folder_flat_tree(tmp_path):
    _write_tree(tmp_path / "tree", per_class=10)
    info = prepare_dataset("imagefolder", tmp_path / "cache", data_path=tmp_path / "tree")
    assert info.num_classes == 3 and info.stored_side is None
    assert (info.num_train, info.num_val, info.num_test) == (18, 6, 6)
    _assert_colours(info, "train", 16)  # decoded straight to the asked side
    _assert_colours(info, "val", 8)


def test_image_folder_given_splits(tmp_path):
    _write_tree(tmp_path / "tree" / "train", per_class=10)
    _write_tree(tmp_path / "tree" / "test", per_class=2)
    info = prepare_dataset("imagefolder", tmp_path / "cache", data_path=tmp_path / "tree",
                           resolution=12)
    assert (info.num_train, info.num_val, info.num_test) == (24, 6, 6)  # val drawn from train
    _, test_labels = _batches(info, "test")
    assert sorted(test_labels.tolist()) == [0, 0, 1, 1, 2, 2]
    _assert_colours(info, "test", 12)


# ---------------------------------------------------------------------------- npz


@pytest.mark.parametrize("grey", [False, True])
def test_npz_round_trip(tmp_path, grey):
    arrays = _write_npz(tmp_path / "d.npz", grey=grey)
    info = prepare_dataset("npz", tmp_path / "cache", data_path=tmp_path / "d.npz",
                           resolution=8)  # the stored side: no resize, exact pixels
    assert (info.num_train, info.num_val, info.num_test) == (40, 10, 12)  # val as given
    assert info.num_classes == 4 and info.stored_side == 8
    for split in ("train", "val", "test"):
        images, labels = _batches(info, split)
        x = arrays[f"x_{split}"]
        x = np.repeat(x[..., None], 3, axis=-1) if grey else x
        np.testing.assert_array_equal(labels.numpy(), arrays[f"y_{split}"])
        torch.testing.assert_close(images, _nchw(x), atol=1e-3, rtol=0)


def test_npz_without_val_draws_it_from_train(tmp_path):
    _write_npz(tmp_path / "d.npz", val=False)
    info = prepare_dataset("npz", tmp_path / "cache", data_path=tmp_path / "d.npz")
    assert (info.num_train, info.num_val, info.num_test) == (32, 8, 12)


def test_content_hash_reuses_and_separates_caches(tmp_path):
    data = tmp_path / "d.npz"
    _write_npz(data, seed=0)
    first = prepare_dataset("npz", tmp_path / "cache", data_path=data)
    meta = Path(first.train_path).parent / "meta.json"
    before = os.stat(meta).st_mtime_ns
    assert prepare_dataset("npz", tmp_path / "cache", data_path=data) == first
    assert os.stat(meta).st_mtime_ns == before  # reused, not rewritten
    _write_npz(data, seed=1)  # same shapes, other pixels
    second = prepare_dataset("npz", tmp_path / "cache", data_path=data)
    assert second.data_hash != first.data_hash
    assert Path(second.train_path).parent != Path(first.train_path).parent
    assert os.path.exists(first.train_path)  # the old cache is left alone


# ---------------------------------------------------------------------------- bad input


def _cifar_case(tmp_path: Path, damage: str) -> Path:
    folder, _ = _write_cifar(tmp_path, 10, train_per_class=5, test_per_class=1)
    if damage == "missing file":
        (folder / "test_batch").unlink()
    elif damage == "truncated pickle":
        data = (folder / "data_batch_3").read_bytes()
        (folder / "data_batch_3").write_bytes(data[:len(data) // 2])
    elif damage == "labels out of range":
        _dump(folder / "test_batch", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 10]})
    elif damage == "length mismatch":
        _dump(folder / "test_batch", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [3]})
    elif damage == "bad codec name":  # one damaged byte in the pickle (found by fuzzing)
        data = (folder / "data_batch_3").read_bytes()
        assert b"latin1" in data
        (folder / "data_batch_3").write_bytes(data.replace(b"latin1", b"lat%n1", 1))
    elif damage == "code in pickle":
        (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": os.getcwd}))
    return folder


def _npz_case(tmp_path: Path, damage: str) -> Path:
    tmp_path.mkdir()
    path = tmp_path / "d.npz"
    bad = {
        "missing key": {"x_test": None},
        "bad shape": {"x_train": np.zeros((40, 8, 8, 4), np.uint8)},
        "float images": {"x_train": np.zeros((40, 8, 8, 3), np.float32)},
        "length mismatch": {"y_train": np.arange(39) % 4},
        "negative label": {"y_test": np.full(12, -1)},
        "one class": {"y_train": np.zeros(40, int), "y_val": np.zeros(10, int),
                      "y_test": np.zeros(12, int)},
        "stray label": {"y_train": np.r_[np.arange(39) % 4, 10**9]},
        "test-only class": {"y_test": np.arange(12) % 5},
        "huge unsigned label": {"y_test": np.full(12, 2**63 + 5, np.uint64)},
        "all black": {f"x_{s}": np.zeros((n, 8, 8, 3), np.uint8)
                      for s, n in (("train", 40), ("val", 10), ("test", 12))},
    }
    if damage == "not a zip":
        path.write_bytes(b"this is not an npz file")
    elif damage == "truncated zip":
        _write_npz(path)
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
    else:
        _write_npz(path, **bad[damage])
    return path


def _tree_case(tmp_path: Path, damage: str) -> Path:
    root = tmp_path / "tree"
    _write_tree(root, per_class=4)
    if damage == "not an image":
        (root / "dog" / "bad.jpg").write_bytes(b"<html>not a jpeg</html>")
    elif damage == "empty class":
        (root / "fox").mkdir()
    elif damage == "train without test":  # was blamed as an empty class named "train"
        (root / "train").mkdir()
        for cls in COLOURS:
            (root / cls).rename(root / "train" / cls)
    elif damage == "one class":
        for cls in ("dog", "eel"):
            for f in (root / cls).iterdir():
                f.unlink()
            (root / cls).rmdir()
    return root


@pytest.mark.parametrize("name, make, damage, match", [
    ("cifar10", None, "absent", r"is not a folder; expected the folder cifar-10-batches-py/"),
    ("cifar10", _cifar_case, "missing file", r"lacks test_batch; expected"),
    ("cifar10", _cifar_case, "truncated pickle", r"cannot read .*data_batch_3 as a CIFAR pickle"),
    ("cifar10", _cifar_case, "labels out of range", r"test_batch: labels must lie in 0\.\.9"),
    ("cifar10", _cifar_case, "length mismatch", r"test_batch: 2 images but 1 labels"),
    ("cifar10", _cifar_case, "code in pickle", r"batches\.meta .*refusing to load"),
    ("cifar10", _cifar_case, "bad codec name", r"cannot read .*data_batch_3 as a CIFAR pickle "
                                               r"\(LookupError: unknown encoding: lat%n1\)"),
    ("npz", None, "absent", r"is not a file; expected a \.npz file"),
    ("npz", _npz_case, "not a zip", r"d\.npz is not a \.npz file \(not a zip archive: it "
                                    r"starts with b'this'\); expected"),
    ("npz", _npz_case, "truncated zip", r"cannot read .*d\.npz as \.npz \(BadZipFile"),
    ("npz", _npz_case, "missing key", r"lacks x_test \(has x_train, x_val"),
    ("npz", _npz_case, "bad shape", r"x_train: images must have shape \(N, S, S, 3\)"),
    ("npz", _npz_case, "float images", r"x_train: images must be uint8, got float32"),
    ("npz", _npz_case, "length mismatch", r"x_train has 40 images but y_train has 39 labels"),
    ("npz", _npz_case, "negative label", r"y_test: labels must be class ids 0\.\.C-1, got -1"),
    ("npz", _npz_case, "one class", r"has 1 class\(es\); .* at least 2"),
    ("npz", _npz_case, "stray label", r"d\.npz: labels must be class ids 0\.\.C-1 with every "
                                      r"class in the train split; labels run to 1000000000 but "
                                      r"999,999,996 of these 1,000,000,001 classes have no "
                                      r"train image \(4, 5, 6, 7, 8, \.\.\.\)"),
    ("npz", _npz_case, "test-only class", r"labels run to 4 but 1 of these 5 classes have no "
                                          r"train image \(4\)$"),
    ("npz", _npz_case, "huge unsigned label", r"y_test: labels must be class ids 0\.\.C-1, got "
                                              r"9223372036854775813$"),
    ("npz", _npz_case, "all black", r"every training image of 'npz' is the same flat colour "
                                    r"\(pixel std 0 of 255 in every channel, mean 0\.0, 0\.0, "
                                    r"0\.0\): nothing to learn"),
    ("imagefolder", None, "absent", r"is not a folder; expected a folder of class sub-folders"),
    ("imagefolder", _tree_case, "not an image", r"cannot read image .*dog/bad\.jpg"),
    ("imagefolder", _tree_case, "empty class", r"class folder .*fox holds no images"),
    ("imagefolder", _tree_case, "one class", r"has 1 class\(es\)"),
    ("imagefolder", _tree_case, "train without test", r"tree has train/ but no test/; expected "
                                                      r".*\(a split layout needs both train/ "
                                                      r"and test/\)$"),
])
def test_bad_input_raises_one_line_dataset_error(tmp_path, name, make, damage, match):
    path = tmp_path / "absent" if make is None else make(tmp_path / "in", damage)
    with pytest.raises(DatasetError, match=match) as err:
        prepare_dataset(name, tmp_path / "cache", data_path=path)
    assert "\n" not in str(err.value), str(err.value)
    # bad input leaves no cache entry behind (it would only hold the lock file)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_an_image_too_large_to_decode_safely_is_one_line(tmp_path, monkeypatch):
    # PIL's DecompressionBombError (a 14000 x 14000 PNG) was a 30-line traceback
    from PIL import Image

    root = tmp_path / "tree"
    _write_tree(root, per_class=4)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL refuses over 2x: 240, 576 px
    with pytest.raises(DatasetError, match=r"cannot read image .*: it is too large to decode "
                                           r"safely \(Image size .*\); shrink it or leave it "
                                           r"out$") as err:
        prepare_dataset("imagefolder", tmp_path / "cache", data_path=root)
    assert "\n" not in str(err.value)


def test_a_16_bit_grey_image_is_scaled_not_clipped_to_white(tmp_path) -> None:
    """Pillow's convert("RGB") clips a 16-bit grey PNG (mode I;16) at 255: a scan stored
    as nearly all white, without a word."""
    from PIL import Image

    from proxies.sources.image_folder import load_rgb

    grey = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    Image.fromarray(grey).save(tmp_path / "scan.png")
    with Image.open(tmp_path / "scan.png") as im:
        assert im.mode.startswith("I")  # (the case: a 16-bit mode)
    rgb = load_rgb(tmp_path / "scan.png")
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    expected = np.rint(grey / 65535 * 255).astype(np.uint8)
    assert (rgb[..., 0] == expected).all() and (rgb[..., 2] == expected).all()


def test_a_file_name_that_is_not_utf8_is_hashed(tmp_path) -> None:
    """A name with a byte that is not UTF-8 (Python holds it as a surrogate escape) was a
    UnicodeEncodeError traceback in data prepare and the search."""
    from proxies.sources._common import content_hash

    (tmp_path / "a").mkdir()
    bad = tmp_path / "a" / os.fsdecode(b"bad\xff.png")
    bad.write_bytes(b"x")
    good = tmp_path / "a" / "good.png"
    good.write_bytes(b"x")
    first = content_hash("imagefolder", [bad, good])
    assert len(first) == 16 and first != content_hash("imagefolder", [good, good])
