"""Trials a space samples with: Optuna's, a seeded uniform one, and the parser's own probes."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

__all__ = ["TrialLike", "RandomTrial", "SetTrial", "Picker", "FirstChoice", "NameRecorder",
           "every_choice"]


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


class SetTrial:
    """Answers ``given[name]`` where that is one of the parameter's choices, a seeded uniform
    choice otherwise (a parameter asked only for some earlier answers); records what it
    answered and each parameter's choices, for a local search over them."""

    def __init__(self, given: dict[str, Any], rng: random.Random) -> None:
        self.given, self.rng = given, rng
        self.params: dict[str, Any] = {}
        self.choices: dict[str, tuple[Any, ...]] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        self.choices[name] = tuple(choices)
        value = self.given.get(name, _UNSET)
        self.params[name] = value if value is not _UNSET and value in self.choices[name] \
            else self.rng.choice(self.choices[name])
        return self.params[name]


_UNSET = object()


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


class _PathTrial:
    """Answers the choice indices of ``path`` in order (0 past its end) and records how many
    choices each parameter had, for :func:`every_choice`."""

    def __init__(self, path: list[int]) -> None:
        self.path, self.sizes = path, []
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        k = len(self.sizes)
        self.sizes.append(len(choices))
        self.params[name] = choices[self.path[k] if k < len(self.path) else 0]
        return self.params[name]


def every_choice(sample: Callable[[TrialLike], Any]) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Every (result, params) ``sample`` can give, depth first (conditional parameters, asked
    only for some earlier answers, included): each distinct set of answers exactly once."""
    path: list[int] = []
    while True:
        trial = _PathTrial(path)
        yield sample(trial), trial.params
        path = [path[k] if k < len(path) else 0 for k in range(len(trial.sizes))]
        k = len(path) - 1
        while k >= 0 and path[k] + 1 >= trial.sizes[k]:
            k -= 1
        if k < 0:
            return
        path = path[:k] + [path[k] + 1]
