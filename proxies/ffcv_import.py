"""Import FFCV without paying ~3 s of numba JIT for a two-entry lookup table."""

from __future__ import annotations

import sys
import threading

_lock = threading.Lock()


def import_ffcv() -> None:
    """Import ffcv once per process, skipping the numba compile its image field triggers.

    ffcv.fields.rgb_image builds `IMAGE_MODES = numba.typed.Dict()` at import time; the first
    insertion JIT-compiles numba's typed-dict code (~3 s per fresh process). The table is only
    ever read from Python (never inside jitted code), so while that module is imported we let
    `numba.typed.Dict` be the built-in dict. Nothing else changes.
    """
    if "ffcv.fields.rgb_image" in sys.modules:
        return
    with _lock:
        if "ffcv.fields.rgb_image" in sys.modules:
            return
        import numba.typed

        typed_dict = numba.typed.Dict
        numba.typed.Dict = dict
        try:
            import ffcv.fields.rgb_image  # noqa: F401
        finally:
            numba.typed.Dict = typed_dict
