"""Documents the tests start from: a small valid space written in Python, and the shipped ones."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import yaml

from search_spaces import SPACES_DIR, list_spaces

SHIPPED = list_spaces()

SMALL_DOC: dict[str, Any] = {
    "name": "small",
    "description": "A small space written in Python for the format tests.",
    "resolution": 64,
    "num_classes": 10,
    "depth": {"total": [4, 8], "ratios": ["1:1:1:1", "1:1:3:1"]},
    "width": {"base": [16, 32], "multipliers": "1:2:4:8", "divisor": 16},
    "norm": ["ln_nobias", "gn1"],
    "stages": [
        {"mixer": ["sepconv", "pooling"]},
        {"mixer": "pooling"},
        {"mixer": ["sepconv", "attention"], "norm": ["ln", "bn"]},
        {"mixer": "attention", "res_scale": 1.0},
    ],
    "mixers": {"sepconv": {"kernel_size": [3, 5]}, "attention": {"head_dim": [8, 16]}},
    "proxy": {"width_mult": 0.5, "depth_mult": 0.5, "resolution": 32, "stem_stride": 2},
}


def small_doc() -> dict[str, Any]:
    """A fresh deep copy of :data:`SMALL_DOC` (tests mutate it)."""
    return copy.deepcopy(SMALL_DOC)


def shipped_doc(name: str) -> Any:
    """A shipped space's document as ``yaml.safe_load`` returns it (a fresh copy each call)."""
    return yaml.safe_load((SPACES_DIR / f"{name}.yaml").read_text())


class ScriptedTrial:
    """Optuna-style trial that answers from ``script`` (else the first choice) and records every
    name it is asked for with its choices."""

    def __init__(self, script: dict[str, Any] | None = None) -> None:
        self.script = script or {}
        self.asked: dict[str, tuple[Any, ...]] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        assert name not in self.asked, f"parameter {name!r} suggested twice in one sample"
        self.asked[name] = tuple(choices)
        value = self.script.get(name, choices[0])
        assert value in choices, f"script gives {name}={value!r}, not one of {list(choices)}"
        return value
