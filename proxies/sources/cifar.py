"""CIFAR-10 and CIFAR-100 from their standard python-pickle folders.

The official test set becomes our test split; val is drawn from the official train set.
The pickles are read with an unpickler that only accepts numpy arrays and builtins, so a
hostile file cannot run code.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from proxies.errors import DatasetError
from proxies.registry import SourceData, register_source
from proxies.sources._common import check_labels, check_num_classes

_SIDE = 32  # pixels; CIFAR images are 32x32 RGB
_ALLOWED = {  # (module, name) the unpickler may construct: numpy arrays and their dtypes
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


@dataclass(frozen=True)
class CifarSource:
    """CIFAR-10 (`cifar-10-batches-py/`) or CIFAR-100 (`cifar-100-python/`)."""

    folder: str  # the folder name inside the official archive
    train: tuple[str, ...]  # train pickle files
    test: str  # test pickle file
    meta: str  # pickle holding the class names
    label_key: str  # key of the labels in each data pickle
    names_key: str  # key of the class names in the meta pickle

    @property
    def expects(self) -> str:
        return (f"the folder {self.folder}/ (or its parent) holding "
                f"{', '.join([*self.train, self.test, self.meta])}")

    def _root(self, path: Path) -> Path:
        if (path / self.folder).is_dir():
            return path / self.folder
        return path

    def files(self, path: Path) -> list[Path]:
        root = self._root(path)
        if not root.is_dir():
            raise DatasetError(f"{path} is not a folder; expected {self.expects}")
        names = [*self.train, self.test, self.meta]
        missing = [n for n in names if not (root / n).is_file()]
        if missing:
            raise DatasetError(f"{root} lacks {', '.join(missing)}; expected {self.expects}")
        return [root / n for n in names]

    def read(self, path: Path) -> SourceData:
        root = self._root(path)
        names = _load(root / self.meta).get(self.names_key)
        if not isinstance(names, list):
            raise DatasetError(f"{root / self.meta} has no list {self.names_key!r} of class "
                               f"names")
        check_num_classes(len(names), str(root))
        images, labels, splits = [], [], []
        for split_id, name in [(0, n) for n in self.train] + [(2, self.test)]:
            x, y = self._batch(root / name, len(names))
            images.append(x)
            labels.append(y)
            splits.append(np.full(len(y), split_id, dtype=np.int8))
        return SourceData(images=np.concatenate(images), labels=np.concatenate(labels),
                          num_classes=len(names), splits=np.concatenate(splits))

    def _batch(self, path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
        d = _load(path)
        data, labels = d.get("data"), d.get(self.label_key)
        if data is None or labels is None:
            raise DatasetError(f"{path} lacks 'data' or {self.label_key!r}; is it a "
                               f"{self.folder} file?")
        data = np.asarray(data)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * _SIDE * _SIDE:
            raise DatasetError(f"{path}: 'data' must be (N, {3 * _SIDE * _SIDE}) uint8, got "
                               f"{data.shape} {data.dtype}")
        y = check_labels(labels, num_classes, str(path))
        if len(y) != len(data):
            raise DatasetError(f"{path}: {len(data)} images but {len(y)} labels")
        x = data.reshape(-1, 3, _SIDE, _SIDE).transpose(0, 2, 3, 1)  # CHW rows -> HWC
        return np.ascontiguousarray(x), y


def _load(path: Path) -> dict[str, object]:
    """A CIFAR pickle as a dict with str keys; DatasetError if it cannot be read."""
    try:
        d = _ArraysOnly(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError,
            AttributeError, LookupError, MemoryError) as e:  # LookupError: a bad codec name
        raise DatasetError(f"cannot read {path} as a CIFAR pickle ({type(e).__name__}: "
                           f"{e})") from None
    if not isinstance(d, dict):
        raise DatasetError(f"{path} holds a {type(d).__name__}, expected a CIFAR dict")
    out = {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in d.items()}
    for k, v in out.items():  # class names come back as bytes under encoding="bytes"
        if isinstance(v, list) and v and all(isinstance(s, bytes) for s in v):
            out[k] = [s.decode("latin1") for s in v]
    return out


register_source("cifar10", CifarSource(
    folder="cifar-10-batches-py", train=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test="test_batch", meta="batches.meta", label_key="labels", names_key="label_names"))
register_source("cifar100", CifarSource(
    folder="cifar-100-python", train=("train",), test="test", meta="meta",
    label_key="fine_labels", names_key="fine_label_names"))
