"""Declarative search spaces: YAML documents (or dicts) compiled to samplers of ArchSpecs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nas.models.proxy import ProxySpec, round_width
from nas_errors import SpaceError, did_you_mean
from search_spaces._space import RandomTrial, Space, split_depth

__all__ = ["Space", "ProxySpec", "RandomTrial", "load_space", "list_spaces", "split_depth",
           "round_width", "SPACES_DIR", "MAX_SPACE_BYTES"]

SPACES_DIR = Path(__file__).resolve().parent


def list_spaces() -> list[str]:
    """Names of the spaces shipped in this package."""
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(key, line)
        self.key, self.line = key, line


_LOADER = None


def _unique_keys_loader():
    """PyYAML's SafeLoader, refusing a mapping that gives one key twice (PyYAML keeps the last
    silently: a second ``constraints:`` block would drop the first's rules)."""
    global _LOADER
    if _LOADER is None:
        import yaml

        class UniqueKeyLoader(yaml.SafeLoader):
            def construct_mapping(self, node, deep=False):
                seen = set()
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue  # "<<: *base" merges are PyYAML's to resolve
                    key = self.construct_object(key_node, deep=deep)
                    try:
                        duplicate = key in seen
                        seen.add(key)
                    except TypeError:  # an unhashable key: SafeLoader reports it itself
                        continue
                    if duplicate:
                        raise _DuplicateKey(key, key_node.start_mark.line + 1)
                return super().construct_mapping(node, deep=deep)

        _LOADER = UniqueKeyLoader
    return _LOADER


MAX_SPACE_BYTES = 1 << 20  # a space file is a few KB; more is the wrong file


def _not_a_file(path: Path) -> str:
    """Why ``path`` (not a regular file) cannot be a space file, in a few words."""
    if path.is_dir():
        return "is a directory, not a space file (give a .yaml file)"
    if path.exists():  # a pipe, a device such as /dev/zero, a socket
        return ("is not a regular file (a pipe, device or socket); write the space to a "
                ".yaml file")
    return "no such space file"


def _read_yaml(path: Path) -> Any:
    import yaml

    try:
        size = path.stat().st_size
        if size > MAX_SPACE_BYTES:
            raise SpaceError(f"{path}: {size:,} bytes, more than a space file's limit of "
                             f"{MAX_SPACE_BYTES:,} (is it the right file?)")
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpaceError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise SpaceError(f"{path}: not a UTF-8 text file (byte {e.start})") from None
    try:
        return yaml.load(text, Loader=_unique_keys_loader())  # noqa: S506 - a SafeLoader
    except _DuplicateKey as e:
        raise SpaceError(f"{path}: line {e.line}: key '{e.key}' given twice in one mapping "
                         f"(the first would be silently dropped); keep one") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpaceError(f"{path}: {where}invalid YAML: {problem}") from None
    except RecursionError:
        raise SpaceError(f"{path}: invalid YAML: nested too deeply") from None
    except Exception as e:  # noqa: BLE001 - PyYAML's constructors raise ValueError, KeyError...
        # e.g. "!!int abc", "!!bool maybe", "2001-02-30": the text parses but a value cannot be
        # built. Whatever the type, it is a malformed document: one line, no traceback.
        raise SpaceError(f"{path}: invalid YAML: cannot build a value ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else 'no message'})") from None


def load_space(name_or_path: str | os.PathLike) -> Space:
    """A shipped space by name, or a user's YAML file by path.

    Args:
        name_or_path: a name from :func:`list_spaces`, or a path to a ``.yaml``/``.yml`` file.

    Returns:
        The validated :class:`Space`.

    Raises:
        SpaceError: unknown name, unreadable file, invalid YAML, or a malformed document (one
            line: the file, the key path and what is allowed).

    Example:
        >>> space = load_space("tiny")
        >>> arch, params = space.sample_random(seed=0)
    """
    text = os.fspath(name_or_path)
    path = Path(text)
    try:
        is_path = (path.suffix in (".yaml", ".yml") or os.sep in text or "/" in text
                   or path.is_file())
        if is_path and not path.is_file():
            raise SpaceError(f"{path}: {_not_a_file(path)}")
        shipped = SPACES_DIR / f"{text}.yaml"
        is_shipped = not is_path and shipped.is_file()
    except OSError as e:  # a name too long, a folder on the way that cannot be searched
        raise SpaceError(f"{path}: cannot read: {e.strerror or e}") from None
    if is_path:
        return Space(_read_yaml(path), str(path))
    if not is_shipped:
        known = list_spaces()
        raise SpaceError(f"unknown space '{text}'; known: {', '.join(known)}"
                         f"{did_you_mean(text, known)} (or give a path to a .yaml file)")
    return Space(_read_yaml(shipped), shipped.name)
