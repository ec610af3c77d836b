"""prepare_dataset: registry, split, cache reuse, concurrency and corruption handling."""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from proxies import DatasetError, DatasetInfo, list_datasets, make_loader, prepare_dataset
from proxies.beton import check_beton
from proxies.loader_cache import shared_loader
from proxies.registry import get_builder
from proxies.splits import stratified_split

NUM_DIGITS = 1797


def _read_labels(path: str, n: int) -> np.ndarray:
    """Labels straight from the .beton metadata (the IntField is the second field)."""
    from ffcv.reader import Reader

    reader = Reader(path)
    assert reader.num_samples == n
    return np.asarray(reader.metadata["f1"])


# ---------------------------------------------------------------------------- registry

def test_registry_lists_digits():
    assert "digits" in list_datasets()


def test_unknown_name_lists_known_names(tmp_path):
    with pytest.raises(DatasetError, match=r"unknown dataset 'imagenet'.*digits"):
        prepare_dataset("imagenet", tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written for a bad name


@pytest.mark.parametrize("kwargs, match", [
    ({"resolution": 4}, "resolution must be an int in 8..512"),
    ({"resolution": 32.0}, "resolution must be an int"),
    ({"val_fraction": 0.0}, "val_fraction must be a number in 0.01..0.98"),
    ({"val_fraction": 1.5}, "val_fraction"),
    ({"test_fraction": 0.0}, "test_fraction must be a number in 0.01..0.98"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, "must leave a train split"),
    ({"seed": -1}, "seed must be a non-negative int"),
])
def test_bad_arguments_raise_dataset_error(tmp_path, kwargs, match):
    with pytest.raises(DatasetError, match=match):
        prepare_dataset("digits", tmp_path, **kwargs)


def test_unusable_cache_dir_raises_dataset_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(DatasetError, match="cannot create cache directory .*cache_dir"):
        prepare_dataset("digits", blocker)


# ---------------------------------------------------------------------------- content

def test_info_fields(digits: DatasetInfo, digits_cache: Path):
    assert digits.name == "digits"
    assert digits.num_classes == 10 and digits.resolution == 32
    assert digits.num_train + digits.num_val + digits.num_test == NUM_DIGITS
    assert 350 <= digits.num_val <= 370 and 350 <= digits.num_test <= 370  # 20 % per class
    assert Path(digits.train_path) == digits_cache / "digits_r32_s0_v20_t20" / "train.beton"
    assert Path(digits.val_path).name == "val.beton" and os.path.isabs(digits.val_path)
    assert Path(digits.test_path).name == "test.beton" and os.path.isabs(digits.test_path)
    assert len(digits.fingerprint) == 16 and int(digits.fingerprint, 16) >= 0
    assert len(set(digits.mean)) == 1 and 40 < digits.mean[0] < 120  # grey, mostly background
    assert len(set(digits.std)) == 1 and 40 < digits.std[0] < 120


def test_split_is_stratified_and_labels_in_range(digits: DatasetInfo):
    train = _read_labels(digits.train_path, digits.num_train)
    val = _read_labels(digits.val_path, digits.num_val)
    test = _read_labels(digits.test_path, digits.num_test)
    assert set(np.unique(train)) == set(range(10)) == set(np.unique(val)) == set(np.unique(test))
    counts = [Counter(x.tolist()) for x in (train, val, test)]
    for cls in range(10):
        total = sum(c[cls] for c in counts)
        for part in counts[1:]:
            assert abs(part[cls] - 0.2 * total) <= 0.5 + 1e-9  # per-class rounding only


def test_split_is_deterministic_and_disjoint():
    labels = get_builder("digits")(8).labels
    train_a, val_a = stratified_split(labels, 0.2, seed=0)
    train_b, val_b = stratified_split(labels, 0.2, seed=0)
    _, val_c = stratified_split(labels, 0.2, seed=1)
    np.testing.assert_array_equal(val_a, val_b)
    np.testing.assert_array_equal(train_a, train_b)
    assert not np.array_equal(val_a, val_c)
    assert len(np.intersect1d(train_a, val_a)) == 0
    assert len(train_a) + len(val_a) == NUM_DIGITS


def test_three_way_split_partitions_every_class():
    labels = get_builder("digits")(8).labels
    train, val, test = stratified_split(labels, (0.2, 0.2), seed=0)
    both = np.concatenate([train, val, test])
    np.testing.assert_array_equal(np.sort(both), np.arange(NUM_DIGITS))  # disjoint, complete
    for cls in range(10):
        n = int(np.sum(labels == cls))
        for part in (val, test):
            assert int(np.sum(labels[part] == cls)) == round(0.2 * n)
    # the first part is the same as a two-way split's: adding a test split keeps val stable
    np.testing.assert_array_equal(stratified_split(labels, 0.2, seed=0)[1], val)


def test_digits_builder_pixels():
    raw = get_builder("digits")(32)
    assert raw.images.shape == (NUM_DIGITS, 32, 32, 3) and raw.images.dtype == np.uint8
    assert raw.images.max() >= 250 and raw.images.min() == 0
    np.testing.assert_array_equal(raw.images[..., 0], raw.images[..., 2])  # grey replicated
    assert raw.labels.dtype == np.int64 and raw.num_classes == 10


# ---------------------------------------------------------------------------- reuse

def test_reuse_does_not_rewrite(digits: DatasetInfo, digits_cache: Path):
    paths = [digits.train_path, digits.val_path, digits.test_path,
             str(Path(digits.train_path).parent / "meta.json")]
    before = [os.stat(p).st_mtime_ns for p in paths]
    again = prepare_dataset("digits", digits_cache)
    assert again == digits
    assert [os.stat(p).st_mtime_ns for p in paths] == before


def test_meta_json_matches_info(digits: DatasetInfo):
    meta = json.loads((Path(digits.train_path).parent / "meta.json").read_text())
    assert meta["fingerprint"] == digits.fingerprint
    assert meta["num_train"] == digits.num_train and meta["num_val"] == digits.num_val
    assert meta["num_test"] == digits.num_test
    assert meta["test_bytes"] == os.path.getsize(digits.test_path)
    assert meta["train_bytes"] == os.path.getsize(digits.train_path)
    assert tuple(meta["mean"]) == digits.mean


def test_cache_dir_from_environment(monkeypatch, digits: DatasetInfo, digits_cache: Path):
    monkeypatch.setenv("NAS_CACHE_DIR", str(digits_cache))
    assert prepare_dataset("digits") == digits


# ---------------------------------------------------------------------------- concurrency

class _Builds(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += record.getMessage().startswith("building dataset")


def _prepare_in_child(cache_dir: str, barrier, results) -> None:
    builds = _Builds()
    log = logging.getLogger("proxies.datasets")
    log.setLevel(logging.INFO)
    log.addHandler(builds)
    barrier.wait()  # both processes call prepare_dataset at the same moment
    info = prepare_dataset("digits", cache_dir)
    results.put((info.fingerprint, builds.count))


def test_concurrent_prepare_from_two_processes(tmp_path, digits: DatasetInfo):
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_prepare_in_child, args=(str(tmp_path), barrier, results))
             for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    (fp_a, built_a), (fp_b, built_b) = (results.get(timeout=5) for _ in procs)
    assert sorted([built_a, built_b]) == [0, 1]  # exactly one process wrote the files
    assert fp_a == fp_b == digits.fingerprint  # byte-identical to a build in another process
    leftovers = [p.name for p in (tmp_path / "digits_r32_s0_v20_t20").iterdir()]
    assert sorted(leftovers) == [".lock", "meta.json", "test.beton", "train.beton", "val.beton"]


# ---------------------------------------------------------------------------- corruption

@pytest.fixture()
def private_digits(tmp_path) -> DatasetInfo:
    """A dataset of this test's own, safe to damage (the session one stays intact)."""
    return prepare_dataset("digits", tmp_path, resolution=8)


def _truncate(path: str, keep: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(keep)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete", "meta", "meta std",
                                    "meta list", "meta num_classes", "meta no classes"])
def test_damaged_cache_is_rebuilt(tmp_path, private_digits: DatasetInfo, damage, caplog):
    path = private_digits.val_path
    if damage == "truncate":
        _truncate(path, os.path.getsize(path) // 2)
    elif damage == "garbage":
        with open(path, "r+b") as f:
            f.seek(100)
            f.write(os.urandom(4096))
    elif damage == "delete":
        os.remove(path)
    elif damage == "meta std":  # a NaN std used to reach Normalize in the loader thread
        meta = Path(path).parent / "meta.json"
        fields = json.loads(meta.read_text())
        fields["std"] = [float("nan"), 1.0, 1.0]
        meta.write_text(json.dumps(fields))
    elif damage == "meta list":  # valid JSON, no object: an AttributeError traceback
        (Path(path).parent / "meta.json").write_text("[]")
    elif damage == "meta num_classes":  # plausible, and trusted: the model got 100 outputs
        meta = Path(path).parent / "meta.json"
        fields = json.loads(meta.read_text())
        fields["num_classes"] = 100
        meta.write_text(json.dumps(fields))
    elif damage == "meta no classes":  # with its checksum made again (or one from before it)
        from proxies.datasets import _meta_sum

        meta = Path(path).parent / "meta.json"
        fields = json.loads(meta.read_text())
        fields["num_classes"] = 0
        fields["meta_sha256"] = _meta_sum(fields)
        meta.write_text(json.dumps(fields))
    else:
        (Path(path).parent / "meta.json").write_text("{not json")
    with caplog.at_level("WARNING", logger="proxies.datasets"):
        rebuilt = prepare_dataset("digits", tmp_path, resolution=8)
    assert rebuilt == private_digits  # same bytes again
    assert "rebuilding dataset cache" in caplog.text
    check_beton(rebuilt.val_path, rebuilt.num_val)


def test_a_meta_json_from_before_its_checksum_is_reused_as_it_is(tmp_path,
                                                                private_digits: DatasetInfo):
    # caches written before the checksum keep their fields (a study stays comparable)
    meta = Path(private_digits.val_path).parent / "meta.json"
    fields = json.loads(meta.read_text())
    assert len(fields.pop("meta_sha256")) == 64
    meta.write_text(json.dumps(fields))
    before = os.stat(meta).st_mtime_ns
    assert prepare_dataset("digits", tmp_path, resolution=8) == private_digits
    assert os.stat(meta).st_mtime_ns == before  # not rebuilt


@pytest.mark.parametrize("keep", [0, 10, 100_000, -1000])
def test_check_beton_rejects_truncated_file(private_digits: DatasetInfo, keep):
    path = private_digits.train_path
    _truncate(path, keep if keep >= 0 else os.path.getsize(path) + keep)
    with pytest.raises(DatasetError, match=r"train\.beton is corrupt .*delete"):
        check_beton(path, private_digits.num_train)


def test_check_beton_rejects_wrong_count_and_garbage(private_digits: DatasetInfo, tmp_path):
    with pytest.raises(DatasetError, match="samples, expected"):
        check_beton(private_digits.val_path, private_digits.num_val + 1)
    junk = tmp_path / "junk.beton"
    junk.write_bytes(os.urandom(50_000))
    with pytest.raises(DatasetError, match="junk.beton is corrupt"):
        check_beton(junk, 10)
    with pytest.raises(DatasetError, match="missing"):
        check_beton(tmp_path / "absent.beton", 10)


@pytest.mark.parametrize("make", [make_loader, shared_loader])
def test_loader_on_truncated_file_raises_dataset_error(private_digits: DatasetInfo, make):
    _truncate(private_digits.val_path, os.path.getsize(private_digits.val_path) - 4096)
    with pytest.raises(DatasetError, match=r"val\.beton is corrupt"):
        make(private_digits, "val", batch_size=16, shuffle=False)


# ---------------------------------------------------------------------------- clutter


@pytest.fixture(scope="module")
def clutter_raw():
    return get_builder("clutter")(32)


def test_clutter_is_the_default_and_has_three_fixed_splits(clutter_raw):
    from proxies import DEFAULT_DATASET
    from proxies.clutter import COUNTS

    assert DEFAULT_DATASET == "clutter"
    raw = clutter_raw
    assert raw.images.shape == (sum(COUNTS.values()), 32, 32, 3) and raw.images.dtype == np.uint8
    assert np.bincount(raw.splits).tolist() == list(COUNTS.values())  # 6000 / 2000 / 2000
    for split in range(3):  # every class in every split, roughly balanced
        counts = np.bincount(raw.labels[raw.splits == split], minlength=10)
        assert counts.min() > 0.7 * counts.mean(), counts


def test_clutter_sources_are_disjoint_between_splits():
    from proxies.clutter import POOL_FRACTIONS, SEED

    labels = get_builder("digits")(8).labels
    pools = stratified_split(labels, POOL_FRACTIONS, SEED)
    for a in range(3):
        for b in range(a + 1, 3):
            assert len(np.intersect1d(pools[a], pools[b])) == 0


def test_clutter_images_are_cluttered_not_centred(clutter_raw):
    grey = clutter_raw.images[..., 0].astype(np.float32) / 255
    ink = grey > 0.5
    # targets move: the ink's centre of mass varies across images by several pixels
    ys = np.array([np.nonzero(m)[0].mean() for m in ink[:500] if m.any()])
    xs = np.array([np.nonzero(m)[1].mean() for m in ink[:500] if m.any()])
    assert ys.std() > 1.5 and xs.std() > 1.5, (ys.std(), xs.std())
    assert (grey > 0).mean() > 0.5  # noise everywhere, not a clean black background


def test_clutter_resolution_follows_the_request():
    raw16 = get_builder("clutter")(16)
    assert raw16.images.shape[1:] == (16, 16, 3)


def test_pixel_statistics_weigh_every_image_alike() -> None:
    """One 300x300 black scan among 16x16 white images set the mean the loader normalises
    every trial with (a pixel-weighted mean of 0.7 here, where the loader serves 9 of 10
    images white); now each image counts once, as the loader serves each at one side."""
    from proxies.datasets import _pixel_stats

    images = [np.full((16, 16, 3), 255, np.uint8) for _ in range(9)]
    images.append(np.zeros((300, 300, 3), np.uint8))
    mean, std = _pixel_stats(images, np.arange(10))
    assert mean == pytest.approx((229.5,) * 3) and std == pytest.approx((76.5,) * 3)
    same = np.stack(images[:9])  # one array: every image of one size, as before
    assert _pixel_stats(same, np.arange(9)) == ((255.0,) * 3, (0.0,) * 3)


def test_a_ctrl_c_while_a_beton_is_written_leaves_no_shared_memory_or_worker(tmp_path):
    # FFCV's writer keeps its metadata in shared memory and unlinks it only when it finishes:
    # a Ctrl-C in between left it to Python's resource_tracker, which printed a "leaked
    # shared_memory objects" warning after the search's one line
    import _thread
    import threading

    from proxies.beton import write_beton

    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm to look in")
    def ours() -> set[Path]:  # Python's SharedMemory names (not PostgreSQL's, say)
        return {p for p in shm.iterdir() if p.name.startswith("psm_")}

    before = ours()
    images = np.random.default_rng(0).integers(0, 255, (40_000, 32, 32, 3), dtype=np.uint8)
    timer = threading.Timer(0.5, _thread.interrupt_main)  # a Ctrl-C while the writer works
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            write_beton(str(tmp_path / "x.beton"), images, np.zeros(len(images), np.int64))
    finally:
        timer.cancel()
    assert ours() - before == set()
    assert mp.active_children() == []
