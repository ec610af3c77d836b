"""Bad configurations fail with ConfigError naming the field and the allowed values, never with a
torch shape error, and they fail the same way through every entry point (validate, build on the
meta device, analytic and traced cost)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import pytest
import torch

from nas.errors import ConfigError
from nas.models.arch import (
    HEADS,
    STEM_STRIDES,
    STEMS,
    ConvMixerSpec,
    MetaFormerSpec,
    StageSpec,
    from_dict,
    stage_grids,
    to_dict,
)
from nas.models.cost import analytic_cost, traced_cost
from nas.models.layers import ACTS, NORMS
from nas.models.mixers import MIXERS, RandomMixing
from nas.models.model import build_model, validate
from nas.models.presets import get_preset

ENTRY_POINTS: dict[str, Callable[[Any], Any]] = {
    "validate": validate,
    "build_meta": lambda spec: build_model(spec, device="meta"),
    "analytic_cost": analytic_cost,
    "traced_cost": traced_cost,
}
HEAD_DIM_MIXERS = [m for m in MIXERS.names() if "head_dim" in MIXERS.get(m).defaults]
ODD_SETTINGS = [("sepconv", "kernel_size"), ("pooling", "pool_size")]


def _spec(*stages: StageSpec, **kw: Any) -> MetaFormerSpec:
    return MetaFormerSpec(stages=stages, **{"img_size": 32, "stem_stride": 2, **kw})


def _stage(width: int = 16, mixer: str = "pooling", **kw: Any) -> StageSpec:
    return StageSpec(depth=1, width=width, mixer=mixer, **kw)


def _raises_everywhere(spec: Any, *fragments: str) -> str:
    """Every entry point raises ConfigError (not a torch error) whose message has ``fragments``."""
    messages = set()
    for name, fn in ENTRY_POINTS.items():
        with pytest.raises(ConfigError) as exc:
            fn(spec)
        msg = str(exc.value)
        missing = [f for f in fragments if f not in msg]
        assert not missing, f"{name}: expected {missing} in the message, got: {msg}"
        messages.add(msg)
    assert len(messages) == 1, f"entry points disagree: {messages}"
    return messages.pop()


def _lists_all(msg: str, names: list[str]) -> None:
    missing = [n for n in names if not re.search(rf"\b{re.escape(n)}\b", msg)]
    assert not missing, f"expected every known name in the message; missing {missing}: {msg}"


# --------------------------------------------------------------------------- mixer settings


@pytest.mark.parametrize("mixer", HEAD_DIM_MIXERS)
def test_width_not_multiple_of_head_dim(mixer: str) -> None:
    spec = _spec(_stage(16), _stage(40, mixer, mixer_args={"head_dim": 16}))
    _raises_everywhere(spec, "stages[1]", "width 40", "head_dim 16", "32", "48")


@pytest.mark.parametrize("mixer", HEAD_DIM_MIXERS)
def test_default_head_dim_is_checked_too(mixer: str) -> None:
    default = MIXERS.get(mixer).defaults["head_dim"]
    spec = _spec(_stage(default + 8, mixer))
    _raises_everywhere(spec, "stages[0]", f"width {default + 8}", f"head_dim {default}")


@pytest.mark.parametrize("mixer,setting", ODD_SETTINGS)
@pytest.mark.parametrize("value", [4, 0, -3, 2.0, True])
def test_even_or_invalid_kernel(mixer: str, setting: str, value: Any) -> None:
    spec = _spec(_stage(16, mixer, mixer_args={setting: value}))
    _raises_everywhere(spec, "stages[0]", f"{mixer}.{setting}", "odd", repr(value))


@pytest.mark.parametrize("mixer", MIXERS.names())
def test_unknown_mixer_setting(mixer: str) -> None:
    spec = _spec(_stage(16, mixer, mixer_args={"kernal_size": 3}))
    allowed = list(MIXERS.get(mixer).defaults) or ["none"]
    msg = _raises_everywhere(spec, "stages[0].mixer_args", "kernal_size", mixer)
    _lists_all(msg, allowed)


@pytest.mark.parametrize("ratio", [0, -1, 0.01])
def test_sepconv_bad_expansion_ratio(ratio: float) -> None:
    spec = _spec(_stage(16, "sepconv", mixer_args={"expansion_ratio": ratio}))
    _raises_everywhere(spec, "stages[0]", "expansion_ratio")


# --------------------------------------------------------------------------- registry names


@pytest.mark.parametrize("field,registry", [("mixer", MIXERS), ("norm", NORMS), ("act", ACTS)])
def test_unknown_registry_name_lists_known_names(field: str, registry: Any) -> None:
    good = _stage(16)
    bad = dataclasses.replace(_stage(32), **{field: "nosuch"})
    msg = _raises_everywhere(_spec(good, bad), f"stages[1].{field}", "'nosuch'")
    _lists_all(msg, registry.names())


def test_unknown_name_suggests_the_closest() -> None:
    msg = _raises_everywhere(_spec(_stage(16, "attenton")), "did you mean 'attention'")
    assert "stages[0].mixer" in msg, msg


@pytest.mark.parametrize("field,value,allowed", [
    ("stem", "v3", STEMS), ("stem_stride", 3, STEM_STRIDES), ("head", "conv", HEADS),
])
def test_unknown_top_level_choice(field: str, value: Any, allowed: tuple[Any, ...]) -> None:
    spec = dataclasses.replace(_spec(_stage(16)), **{field: value})
    msg = _raises_everywhere(spec, field, repr(value))
    _lists_all(msg, [str(a) for a in allowed])


def test_convmixer_unknown_act_lists_known_names() -> None:
    spec = dataclasses.replace(get_preset("test_convmixer_tiny"), act="mish")
    msg = _raises_everywhere(spec, "act", "'mish'")
    _lists_all(msg, ACTS.names())


# --------------------------------------------------------------------------- structure


def test_equal_consecutive_widths() -> None:
    spec = _spec(_stage(16), _stage(32), _stage(32))
    _raises_everywhere(spec, "stages[2].width", "stages[1].width", "32", "differ")


def test_equal_nonconsecutive_widths_are_fine() -> None:
    spec = _spec(_stage(16), _stage(32), _stage(16))
    assert analytic_cost(spec) == traced_cost(spec)


@pytest.mark.parametrize("field,value", [("depth", 0), ("width", 0), ("depth", 1.5)])
def test_bad_stage_integers(field: str, value: Any) -> None:
    spec = _spec(_stage(16), dataclasses.replace(_stage(32), **{field: value}))
    _raises_everywhere(spec, f"stages[1].{field}", ">= 1", repr(value))


def test_no_stages() -> None:
    _raises_everywhere(MetaFormerSpec(stages=()), "stages")


def test_img_size_too_small_for_the_stem() -> None:
    """k7/s4/p2 on 2 pixels leaves none (downsampling k3/s2/p1 never empties a non-empty grid)."""
    spec = MetaFormerSpec(stages=tuple(_stage(16 * (i + 1)) for i in range(4)), img_size=2)
    grids = [g[0] for g in stage_grids(spec)]
    assert grids[0] < 1, f"test premise: expected an empty stem grid, got {grids}"
    _raises_everywhere(spec, "stages[0]", "img_size 2", "stage 1")


@pytest.mark.parametrize("field", ["layer_scale", "res_scale"])
def test_bad_scale(field: str) -> None:
    spec = _spec(dataclasses.replace(_stage(16), **{field: "1e-5"}))
    _raises_everywhere(spec, f"stages[0].{field}", "'1e-5'")


def test_convmixer_patch_larger_than_image() -> None:
    spec = ConvMixerSpec(width=8, depth=1, patch_size=16, img_size=8)
    _raises_everywhere(spec, "img_size 8", "patch_size 16")


def test_from_dict_unknown_field_lists_allowed() -> None:
    d = to_dict(get_preset("test_metaformer_tiny"))
    d["stages"][1]["kernel"] = 3
    with pytest.raises(ConfigError) as exc:
        from_dict(d)
    msg = str(exc.value)
    assert "stages[1]" in msg and "kernel" in msg and "mixer_args" in msg, msg


# --------------------------------------------------------------------------- random mixing grid


def test_random_mixing_rejects_a_different_grid_on_meta() -> None:
    """RandFormer-S12 built for 224 (grids 14x14 / 7x7 in stages 3-4), run at 256 (16x16)."""
    model = build_model(get_preset("randformer_s12"), device="meta").eval()
    x = torch.empty(1, 3, 256, 256, device="meta")
    with pytest.raises(ConfigError) as exc, torch.no_grad():
        model(x)
    msg = str(exc.value)
    for fragment in ("14x14", "196 tokens", "16x16", "256 tokens", "img_size"):
        assert fragment in msg, f"expected {fragment!r} in the message, got: {msg}"


def test_random_mixing_rejects_a_different_grid_on_cpu() -> None:
    spec = get_preset("test_randformer_tiny")  # 32 px, stride-2 stem: grids 16, 8, 4, 2
    model = build_model(spec).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
        with pytest.raises(ConfigError) as exc:
            model(torch.randn(1, 3, 48, 48))
    msg = str(exc.value)
    assert "4x4" in msg and "6x6" in msg, f"expected built 4x4 and got 6x6 grids in: {msg}"


def test_random_mixing_same_token_count_different_shape() -> None:
    """A 2x8 grid has the 16 tokens of 4x4 but a different layout: still rejected."""
    mixer = RandomMixing(16, (4, 4))
    assert mixer(torch.randn(1, 3, 4, 4)).shape == (1, 3, 4, 4)
    with pytest.raises(ConfigError, match="4x4.*2x8"):
        mixer(torch.randn(1, 3, 2, 8))


def test_random_mixing_built_for_other_img_size_works() -> None:
    spec = get_preset("randformer_s12", img_size=256)
    model = build_model(spec, device="meta").eval()
    with torch.no_grad():
        out = model(torch.empty(1, 3, 256, 256, device="meta"))
    assert out.shape == (1, 1000), f"expected (1, 1000), got {tuple(out.shape)}"
    assert analytic_cost(spec) == traced_cost(spec)
