"""Declarative search spaces: YAML documents (or dicts) compiled to samplers of ArchSpecs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nas.errors import SpaceError, did_you_mean
from search_spaces._space import ProxySpec, RandomTrial, Space, parse_space, round_width, split_depth

__all__ = ["Space", "ProxySpec", "RandomTrial", "load_space", "list_spaces", "parse_space",
           "split_depth", "round_width", "SPACES_DIR"]

SPACES_DIR = Path(__file__).resolve().parent


def list_spaces() -> list[str]:
    """Names of the spaces shipped in this package."""
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def _read_yaml(path: Path) -> Any:
    import yaml

    try:
        text = path.read_text()
    except OSError as e:
        raise SpaceError(f"{path}: cannot read: {e.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpaceError(f"{path}: {where}invalid YAML: {problem}") from None


def load_space(name_or_path: str | os.PathLike) -> Space:
    """A shipped space by name, or a user's YAML file by path."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or os.sep in text or path.is_file():
        if not path.is_file():
            raise SpaceError(f"{path}: no such space file")
        return Space(_read_yaml(path), str(path))
    shipped = SPACES_DIR / f"{text}.yaml"
    if not shipped.is_file():
        known = list_spaces()
        raise SpaceError(f"unknown space '{text}'; known: {', '.join(known)}"
                         f"{did_you_mean(text, known)} (or give a path to a .yaml file)")
    return Space(_read_yaml(shipped), shipped.name)
