"""Images and labels from a numpy .npz file: x_train, y_train, x_test, y_test (+ x_val, y_val)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from proxies.errors import DatasetError
from proxies.registry import SourceData, register_source
from proxies.sources._common import (
    check_classes_present,
    check_images,
    check_labels,
    check_num_classes,
)

_SPLIT_KEYS = (("train", 0), ("val", 1), ("test", 2))  # (key suffix, split id)


class NpzSource:
    """Raw uint8 arrays, stored at their native (square) side; grey is replicated to RGB."""

    expects = ("a .npz file with uint8 images x_train, x_test ((N, S, S, 3) or (N, S, S)), "
               "integer labels y_train, y_test in 0..C-1, and optionally x_val, y_val")

    def files(self, path: Path) -> list[Path]:
        if not path.is_file():
            raise DatasetError(f"{path} is not a file; expected {self.expects}")
        return [path]

    def read(self, path: Path) -> SourceData:
        try:
            with open(path, "rb") as f:
                magic = f.read(4)
        except OSError as e:
            raise DatasetError(f"cannot read {path} ({e.strerror}); expected {self.expects}"
                               ) from None
        if magic[:2] != b"PK":  # numpy would try it as a pickle and say so
            raise DatasetError(f"{path} is not a .npz file (not a zip archive: it starts with "
                               f"{magic!r}); expected {self.expects}")
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise DatasetError(f"cannot read {path} as .npz ({type(e).__name__}: {e}); "
                               f"expected {self.expects}") from None
        required = {"x_train", "y_train", "x_test", "y_test"}
        missing = sorted(required - set(arrays))
        if missing or (("x_val" in arrays) != ("y_val" in arrays)):
            missing = missing or ["x_val" if "x_val" not in arrays else "y_val"]
            raise DatasetError(f"{path} lacks {', '.join(missing)} (has "
                               f"{', '.join(sorted(arrays)) or 'nothing'}); expected "
                               f"{self.expects}")
        parts = [(s, i) for s, i in _SPLIT_KEYS if f"x_{s}" in arrays]
        images = [check_images(arrays[f"x_{s}"], f"{path}: x_{s}") for s, _ in parts]
        if len({x.shape[1] for x in images}) > 1:
            sides = ", ".join(f"x_{s} {x.shape[1]}" for (s, _), x in zip(parts, images))
            raise DatasetError(f"{path}: every split must have the same image side, got "
                               f"{sides}")
        labels = []
        for (s, _), x in zip(parts, images):
            y = check_labels(arrays[f"y_{s}"], None, f"{path}: y_{s}")
            if len(y) != len(x):
                raise DatasetError(f"{path}: x_{s} has {len(x)} images but y_{s} has "
                                   f"{len(y)} labels")
            labels.append(y)
        all_labels = np.concatenate(labels)
        num_classes = int(all_labels.max(initial=-1)) + 1
        check_num_classes(num_classes, str(path))
        check_classes_present(labels[0], num_classes, str(path))  # parts[0] is train
        return SourceData(
            images=np.concatenate(images), labels=all_labels, num_classes=num_classes,
            splits=np.concatenate([np.full(len(y), i, dtype=np.int8)
                                   for (_, i), y in zip(parts, labels)]))


register_source("npz", NpzSource())
