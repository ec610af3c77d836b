"""A Space is a value: parsed once, frozen, its constraints a frozen dataclass."""

from __future__ import annotations

import dataclasses

import pytest

from search_spaces import load_space


def test_space_is_frozen_once_parsed():
    space = load_space("tiny")
    with pytest.raises(AttributeError, match="frozen"):
        space.resolution = 32
    with pytest.raises(dataclasses.FrozenInstanceError):
        space.constraints.max_macs = 1  # type: ignore[misc]
    assert load_space("tiny").hash == space.hash
    assert space.constraints.conv_before_attention is True
