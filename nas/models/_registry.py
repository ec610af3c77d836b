"""A small name -> object registry (timm ``register_model`` style)."""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Iterator
from typing import Generic, TypeVar

from nas_errors import ConfigError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; unknown names fail with the list of known ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # what is registered, used in error messages ("token mixer")
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            warnings.warn(f"overwriting {self.kind} '{name}'", stacklevel=3)
        self._items[name] = item
        return item

    def remove(self, name: str) -> T:
        """Unregister ``name`` (tests registering a temporary entry clean up with this)."""
        item = self.get(name)
        del self._items[name]
        return item

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            known = ", ".join(self.names())
            raise ConfigError(
                f"unknown {self.kind} '{name}'; known: {known}{did_you_mean(name, self._items)}"
            ) from None

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
