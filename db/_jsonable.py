"""Normalisation of user payloads into plain JSON values (private)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

_ALLOWED = "dict, list, tuple, str, int, float, bool, None (numpy scalars/arrays are converted)"


def to_json_object(value: Any, what: str) -> dict[str, Any]:
    """A fresh JSON-safe copy of the mapping ``value``, identical to what the database returns.

    Tuples become lists, int keys become strings, numpy scalars/arrays become Python values, and
    non-finite floats (NaN, +-inf) become ``None`` because JSON (and PostgreSQL) cannot hold them.
    Anything else raises ``TypeError`` naming the offending path.
    """
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a mapping (dict), got {type(value).__name__}")
    result = _convert(value, what)
    assert isinstance(result, dict)
    return result


def _convert(value: Any, path: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if isinstance(k, bool) or not isinstance(k, (str, int)):
                raise TypeError(
                    f"{path} has a key {k!r} of type {type(k).__name__}; "
                    f"allowed key types: str, int"
                )
            name = str(k)
            if name in out:
                raise TypeError(f"{path} has keys that collide as JSON strings: {name!r}")
            out[name] = _convert(v, f"{path}[{name!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_convert(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays and scalars
        return _convert(value.tolist(), path)
    if hasattr(value, "item") and callable(value.item):
        return _convert(value.item(), path)
    raise TypeError(
        f"{path} is not JSON-serialisable ({type(value).__name__}); allowed: {_ALLOWED}"
    )
