"""Reading a space document: every check names the file, the key path and what is allowed."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from nas_errors import SpaceError, did_you_mean, printable

__all__ = ["Doc", "short"]

MAX_NUMBER = 1e15  # larger magnitudes are typos (and would overflow float arithmetic)
_NUMERIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")  # YAML 1.2 numbers, as text
_KIND_NAMES = {"int": "integers", "float": "numbers", "number": "numbers", "str": "strings",
               "bool": "true/false"}


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters. Containers are written only as far as
    the limit: YAML aliases make a file of 1 KB hold a list whose whole repr is gigabytes."""
    pieces: list[str] = []
    size = 0

    def put(text: str) -> None:
        nonlocal size
        pieces.append(text)
        size += len(text)
        if size > limit:
            raise _Enough

    def write(v: Any) -> None:
        if isinstance(v, (list, tuple, dict)):
            ends = "[]" if isinstance(v, list) else "()" if isinstance(v, tuple) else "{}"
            put(ends[0])
            items = v.items() if isinstance(v, dict) else v
            for i, item in enumerate(items):
                if i:
                    put(", ")
                if isinstance(v, dict):
                    write(item[0])
                    put(": ")
                    write(item[1])
                else:
                    write(item)
            put("," + ends[1] if isinstance(v, tuple) and len(v) == 1 else ends[1])
        else:
            put(repr(v))

    try:
        write(value)
    except _Enough:
        pass
    text = "".join(pieces)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class _Enough(Exception):
    """``short`` has written past its limit."""


def _one_line(text: str) -> str:
    """Escape line breaks and other unprintable characters (keys may hold anything)."""
    return printable(text)


class Doc:
    """Error helper that knows the file and the key path; converts and checks values."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> SpaceError:
        return SpaceError(_one_line(f"{self.source}: {path}: {message}"))

    def keys(self, path: str, node: Any, allowed: Sequence[str]) -> Mapping[str, Any]:
        if not isinstance(node, Mapping):
            what = f"keys {', '.join(allowed)}" if allowed else "no keys"
            raise self.fail(path or "(top)", f"must be a mapping with {what}; "
                                             f"got {type(node).__name__} {short(node)}")
        for key in node:
            if key not in allowed:
                where = f"{path}.{key}" if path else str(key)
                if not allowed:
                    raise self.fail(where, f"unknown key; {path} takes no keys")
                raise self.fail(where, f"unknown key; allowed: {', '.join(allowed)}"
                                       f"{did_you_mean(key, allowed)}")
        return node

    def section(self, path: str, node: Any, allowed: Sequence[str]) -> Mapping[str, Any]:
        """An optional mapping: absent or null means empty."""
        return {} if node is None else self.keys(path, node, allowed)

    def value(self, path: str, v: Any, kind: str, nullable: bool = False) -> Any:
        """One value converted to ``kind``: int, float, number (int when integral), str, bool."""
        if v is None and nullable:
            return None
        if isinstance(v, Mapping):
            raise self.fail(path, "must be a value or a list of values, not a mapping; "
                                  f"got {short(v)}")
        if kind in ("int", "float", "number"):
            if isinstance(v, str) and _NUMERIC.fullmatch(v.strip()):
                try:
                    v = float(v) if any(c in v for c in ".eE") else int(v)
                except ValueError:  # more digits than Python converts (4,300): far too large
                    raise self.fail(path, f"values must be finite and at most {MAX_NUMBER:.0e} "
                                          f"in magnitude; got {short(v)}") from None
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                null = " or null" if nullable else ""
                raise self.fail(path, f"values must be {_KIND_NAMES[kind]}{null}; got {short(v)}")
            if (isinstance(v, float) and not math.isfinite(v)) or abs(v) > MAX_NUMBER:
                raise self.fail(path, f"values must be finite and at most {MAX_NUMBER:.0e} in "
                                      f"magnitude; got {short(v)}")
            if kind == "int":
                if v != int(v):
                    raise self.fail(path, f"values must be integers; got {v!r}")
                return int(v)
            if kind == "float":
                return float(v)
            return int(v) if v == int(v) else float(v)
        expected = str if kind == "str" else bool
        if not isinstance(v, expected):
            null = " or null" if nullable else ""
            raise self.fail(path, f"values must be {_KIND_NAMES[kind]}{null}; got {short(v)}")
        return v

    def choices(self, path: str, node: Any, kind: str, allowed: Sequence[Any] | None = None,
                nullable: bool = False, low: float | None = None, high: float | None = None,
                choice: bool = True) -> tuple[Any, ...]:
        """A scalar (fixed) or a non-empty list of scalars (a choice), each converted, checked."""
        if isinstance(node, (list, tuple)):
            if not choice:
                raise self.fail(path, f"is fixed for the whole space: give one value, not a "
                                      f"list; got {short(node)}")
            values = tuple(node)
            if not values:
                raise self.fail(path, "an empty list offers no choice; give at least one value")
        else:
            values = (node,)
        out = []
        for raw in values:
            v = self.value(path, raw, kind, nullable)
            if v is not None:
                if allowed is not None and v not in allowed:
                    raise self.fail(path, f"must be one of {', '.join(map(str, allowed))}; "
                                          f"got {v!r}{did_you_mean(v, allowed)}")
                if low is not None and v < low:
                    raise self.fail(path, f"values must be >= {low:g}; got {v!r}")
                if high is not None and v > high:
                    raise self.fail(path, f"values must be <= {high:g}; got {v!r}")
            out.append(v)
        if len({_key(v) for v in out}) != len(out):
            raise self.fail(path, f"lists a value twice: {short(out)}")
        return tuple(out)

    def scalar(self, path: str, node: Any, kind: str, allowed: Sequence[Any] | None = None,
               nullable: bool = False, low: float | None = None,
               high: float | None = None) -> Any:
        return self.choices(path, node, kind, allowed, nullable, low, high, choice=False)[0]

    def ratios(self, path: str, node: Any, n: int, integer: bool = False,
               high: float = MAX_NUMBER) -> dict[str, tuple[Any, ...]]:
        """Choices of ``a:b:c:d`` patterns (a string, or a list of numbers) with ``n`` parts,
        keyed by their canonical text (the Optuna choice)."""
        entries = list(node) if isinstance(node, (list, tuple)) else [node]
        if not entries:
            raise self.fail(path, "an empty list offers no choice; give at least one value")
        flat = isinstance(node, (list, tuple)) and all(
            isinstance(e, (int, float)) and not isinstance(e, bool) for e in node)
        out: dict[str, tuple[Any, ...]] = {}
        for e in entries:
            vals = self._ratio(path, e, n, flat and len(entries) == n > 1)
            if any(v > high for v in vals):
                raise self.fail(path, f"values must be <= {high:g}; got {short(e)}")
            if integer:
                if any(v != int(v) for v in vals):
                    raise self.fail(path, f"widths must be integers; got {short(e)}")
                vals = tuple(int(v) for v in vals)
            text = ":".join(f"{v:g}" if v != int(v) else str(int(v)) for v in vals)
            if text in out:
                raise self.fail(path, f"lists '{text}' twice")
            out[text] = vals
        return out

    def _ratio(self, path: str, e: Any, n: int, flat: bool) -> tuple[float, ...]:
        example = ":".join(["1"] * n)
        if isinstance(e, (list, tuple)):
            parts = [self.value(path, p, "float") for p in e]
        elif isinstance(e, str):
            try:
                parts = [float(p) for p in e.split(":")]
            except ValueError:
                raise self.fail(path, f"must be positive numbers joined by ':' such as "
                                      f"'{example}'; got {short(e)}") from None
        elif isinstance(e, int) and not isinstance(e, bool) and n > 1 and e >= 60:
            digits = []
            while e:
                e, r = divmod(e, 60)
                digits.append(str(r))
            text = ":".join(reversed(digits))
            raise self.fail(path, f"YAML reads the unquoted {text} as a base-60 number; "
                                  f"quote it: '{text}'")
        elif isinstance(e, (int, float)) and not isinstance(e, bool):
            parts = [self.value(path, e, "float")]
        else:
            raise self.fail(path, f"must be a pattern such as '{example}' or a list of {n} "
                                  f"numbers; got {short(e)}")
        if not parts or any(not math.isfinite(p) or p <= 0 for p in parts):
            raise self.fail(path, f"must be positive numbers joined by ':' such as '{example}'; "
                                  f"got {short(e)}")
        if len(parts) != n:
            hint = (f" (a list is a choice: write one pattern as '{example}', quoted)"
                    if flat or n > 1 and len(parts) == 1 else "")
            raise self.fail(path, f"{short(e)} has {len(parts)} part(s) but the space has "
                                  f"{n} stages{hint}")
        return tuple(parts)


def _key(v: Any) -> str:
    return json.dumps(v, sort_keys=True)
