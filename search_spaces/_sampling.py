"""Trials a space samples with: Optuna's, a seeded uniform one, and the parser's own probes."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Protocol

__all__ = ["TrialLike", "RandomTrial", "Picker", "FirstChoice", "NameRecorder"]


class TrialLike(Protocol):
    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


class RandomTrial:
    """Uniform choice per parameter (pycls-style populations); records what it drew."""

    def __init__(self, seed: int | random.Random | None = None) -> None:
        self.rng = seed if isinstance(seed, random.Random) else random.Random(seed)
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        self.params[name] = self.rng.choice(list(choices))
        return self.params[name]


class Picker:
    def __init__(self, trial: TrialLike) -> None:
        self.trial = trial

    def __call__(self, name: str, choices: tuple[Any, ...]) -> Any:
        return choices[0] if len(choices) == 1 else self.trial.suggest_categorical(name, choices)


class FirstChoice:
    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return choices[0]


class NameRecorder:
    """Records every parameter name it is asked for, with its choices; answers the first."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[Any, ...]] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        self.seen[name] = tuple(choices)
        return choices[0]
