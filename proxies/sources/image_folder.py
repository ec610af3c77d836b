"""An ImageFolder tree, `root/<class>/<image>`, or `root/{train,val,test}/<class>/<image>`.

Classes are the sorted sub-folder names (of `train/` when the tree is split). Images are read
with PIL, converted to RGB and stored as JPEG with their longer side at most
`MAX_STORED_SIDE`; loaders centre-crop and resize them to the side each proxy asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from proxies.errors import DatasetError
from proxies.registry import SourceData, register_source
from proxies.sources._common import check_num_classes

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")  # image files read (case-insensitive)
MAX_STORED_SIDE = 256  # pixels; longer side of the stored JPEGs (larger images shrink)
JPEG_QUALITY = 90  # quality of the stored JPEGs
_SPLIT_DIRS = (("train", 0), ("val", 1), ("test", 2))  # (sub-folder, split id)


def load_rgb(path: str | Path) -> np.ndarray:
    """The image at `path` as HWC uint8 RGB; DatasetError naming the file if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):  # 16/32-bit grey:
                # convert("RGB") clips at 255 (a 16-bit scan turns white); scale it instead
                grey = np.asarray(im, dtype=np.float64)
                top = 65535.0 if im.mode.startswith("I;16") or grey.max() <= 65535 else \
                    float(grey.max())
                grey = np.clip(np.rint(grey * (255.0 / top)), 0, 255).astype(np.uint8)
                return np.repeat(grey[:, :, None], 3, axis=2)
            return np.asarray(im.convert("RGB"))
    except Image.DecompressionBombError as e:  # PIL's guard against huge images
        raise DatasetError(f"cannot read image {path}: it is too large to decode safely "
                           f"({' '.join(str(e).split())}); shrink it or leave it out") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise DatasetError(f"cannot read image {path} ({type(e).__name__}: {e})") from None


class LazyImages(Sequence):
    """Image files decoded on access (by the .beton writer), so the tree is never all in RAM."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        return load_rgb(self.paths[i])


class ImageFolderSource:
    """Any tree of class sub-folders holding .jpg .jpeg .png .bmp .webp files."""

    expects = ("a folder of class sub-folders holding images (root/<class>/<image>), or with "
               "train/ and test/ (and optionally val/) sub-folders laid out that way; images "
               f"are {' '.join(EXTENSIONS)}")

    def files(self, path: Path) -> list[Path]:
        return [p for _, _, files in self._tree(path) for p in files]

    def read(self, path: Path) -> SourceData:
        tree = self._tree(path)
        classes = sorted({cls for split_id, cls, _ in tree if split_id in (None, 0)})
        check_num_classes(len(classes), str(path))
        index = {c: i for i, c in enumerate(classes)}
        paths, labels, splits = [], [], []
        for split_id, cls, files in tree:
            if cls not in index:
                raise DatasetError(f"{path}: class folder {cls!r} of a val/test split has no "
                                   f"counterpart in train/ (classes: {', '.join(classes)})")
            for f in files:
                load_rgb(f)  # fail now, naming the file, rather than inside the writer
            paths += files
            labels += [index[cls]] * len(files)
            splits += [split_id or 0] * len(files)
        split_given = tree[0][0] is not None
        return SourceData(images=LazyImages(paths), labels=np.asarray(labels, dtype=np.int64),
                          num_classes=len(classes),
                          splits=np.asarray(splits, dtype=np.int8) if split_given else None)

    def _tree(self, path: Path) -> list[tuple[int | None, str, list[Path]]]:
        """[(split id or None, class name, sorted image files)] in a fixed order."""
        if not path.is_dir():
            raise DatasetError(f"{path} is not a folder; expected {self.expects}")
        if (path / "train").is_dir() and (path / "test").is_dir():
            roots = [(i, path / s) for s, i in _SPLIT_DIRS if (path / s).is_dir()]
        elif (path / "train").is_dir() and not any(
                f.is_file() and f.suffix.lower() in EXTENSIONS
                for f in (path / "train").iterdir()):
            # train/ holding class folders, not images, without test/: not a class "train"
            raise DatasetError(f"{path} has train/ but no test/; expected {self.expects} "
                               "(a split layout needs both train/ and test/)")
        else:
            roots = [(None, path)]
        tree = []
        for split_id, root in roots:
            class_dirs = sorted(d for d in root.iterdir()
                                if d.is_dir() and not d.name.startswith("."))
            if not class_dirs:
                raise DatasetError(f"{root} has no class sub-folders; expected {self.expects}")
            for d in class_dirs:
                files = sorted(f for f in d.iterdir() if f.is_file() and
                               f.suffix.lower() in EXTENSIONS and not f.name.startswith("."))
                if not files:
                    raise DatasetError(f"class folder {d} holds no images "
                                       f"({' '.join(EXTENSIONS)})")
                tree.append((split_id, d.name, files))
        return tree


register_source("imagefolder", ImageFolderSource())
