"""timm weight compatibility: our presets have timm's state-dict layout and compute its function.

For every preset timm has, both models are built on the meta device (no weights allocated) and
their state-dict keys and shapes compared. For the small variants, real weights are exchanged in
both directions (timm -> ours, ours -> timm) and the outputs compared in eval mode on a 64 x 64
input (the models are resolution-agnostic). Both are built on the meta device and materialised
with random values of our own (no slow CPU init), so LayerScale's 1e-5 or zero biases cannot hide
a difference.
"""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from nas.models.model import build_model
from nas.models.presets import TIMM_NAMES, get_preset

FULL_COMPARE = ["poolformer_s12", "poolformerv2_s12", "convformer_s18", "caformer_s18",
                "convmixer_768_32"]
INPUT_SIDE = 64
ATOL = 1e-5


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _fill(model: nn.Module, seed: int) -> None:
    """Give every parameter and buffer fresh random values (models come from ``to_empty``).

    Matrices get std 0.05, per-channel vectors 1 +- 0.1 (norm weights, scales) or +- 0.1 (biases,
    running means): no structured init (LayerScale 1e-5, zero biases) can hide a difference.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.is_floating_point():
                t.zero_()
                continue
            noise = torch.randn(t.shape, generator=g)
            if t.ndim >= 2:
                t.copy_(noise * 0.05)
            elif name.endswith("running_var"):
                t.copy_(1.0 + 0.1 * noise.abs())
            elif name.endswith(("bias", "running_mean")):
                t.copy_(0.1 * noise)
            else:  # norm weights, LayerScale/ResScale, StarReLU scale
                t.copy_(1.0 + 0.1 * noise)


@pytest.fixture(scope="module", params=FULL_COMPARE)
def model_pair(request: pytest.FixtureRequest) -> tuple[str, nn.Module, nn.Module]:
    """(name, ours, timm's), built on the meta device then materialised uninitialised."""
    name = request.param
    with torch.device("meta"):
        theirs = timm.create_model(TIMM_NAMES[name], pretrained=False)
    ours = build_model(get_preset(name), device="meta")
    return name, ours.to_empty(device="cpu").eval(), theirs.to_empty(device="cpu").eval()


def test_full_compare_names_have_timm_models() -> None:
    missing = [n for n in FULL_COMPARE if n not in TIMM_NAMES]
    assert not missing, f"expected every FULL_COMPARE preset in TIMM_NAMES; missing {missing}"


@pytest.mark.parametrize("name", sorted(TIMM_NAMES))
def test_state_dict_keys_and_shapes_match_timm(name: str) -> None:
    with torch.device("meta"):
        theirs = timm.create_model(TIMM_NAMES[name], pretrained=False)
    ours = build_model(get_preset(name), device="meta")
    a, b = _shapes(ours), _shapes(theirs)
    assert list(a) == list(b), (
        f"{name}: keys only in ours {sorted(set(a) - set(b))[:8]}, "
        f"only in timm {sorted(set(b) - set(a))[:8]}"
        if set(a) != set(b) else f"{name}: same keys in a different order"
    )
    diff = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    assert not diff, f"{name}: shapes (ours, timm) differ: {dict(list(diff.items())[:8])}"


@pytest.mark.parametrize("direction", ["timm_to_ours", "ours_to_timm"])
def test_weights_load_and_outputs_match(
    model_pair: tuple[str, nn.Module, nn.Module], direction: str
) -> None:
    name, ours, theirs = model_pair
    src, dst = (theirs, ours) if direction == "timm_to_ours" else (ours, theirs)
    _fill(src, seed=1 if direction == "timm_to_ours" else 2)
    result = dst.load_state_dict(src.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys, f"{name}: {result}"
    x = torch.randn(2, 3, INPUT_SIDE, INPUT_SIDE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y_ours, y_theirs = ours(x), theirs(x)
    assert y_ours.shape == y_theirs.shape == (2, 1000), (
        f"{name}: expected (2, 1000), got {tuple(y_ours.shape)} / {tuple(y_theirs.shape)}"
    )
    assert torch.isfinite(y_ours).all() and y_ours.std() > 0, f"{name}: degenerate outputs"
    err = (y_ours - y_theirs).abs().max().item()
    assert torch.equal(y_ours, y_theirs) or err < ATOL, (
        f"{name} ({direction}): expected max |ours - timm| < {ATOL}, got {err:.3g}"
    )
