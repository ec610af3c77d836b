"""Forward and backward through real (CPU) tiny models: every mixer, norm, activation and stem.

Every test is driven by the registries (MIXERS, NORMS, ACTS, STEMS, STEM_STRIDES), so a newly
registered component is exercised without editing this file. Gradients must be finite for every
trainable parameter and must reach the stem convolution.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from nas.models import MIXERS, ConvMixerSpec, MetaFormerSpec, StageSpec, build_model
from nas.models.arch import STEM_STRIDES, STEMS, stage_grids
from nas.models.layers import ACTS, NORMS, build_norm

RESOLUTIONS = (32, 48, 64)
BATCH = 2


def _head_dim_args(mixer: str, head_dim: int = 8) -> dict[str, Any]:
    return {"head_dim": head_dim} if "head_dim" in MIXERS.get(mixer).defaults else {}


def _tiny(mixers: tuple[str, ...], *, img_size: int = 32, stem_stride: int = 2,
          stem: str = "v2", head: str = "linear", **stage_kw: Any) -> MetaFormerSpec:
    """Widths 16, 24, 32, ... (multiples of 8, the head_dim used for attention-like mixers)."""
    stages = tuple(
        StageSpec(depth=1, width=16 + 8 * i, mixer=m, mixer_args=_head_dim_args(m), **stage_kw)
        for i, m in enumerate(mixers)
    )
    return MetaFormerSpec(stages=stages, stem=stem, stem_stride=stem_stride, head=head,
                          num_classes=7, img_size=img_size)


def _forward_backward(spec: MetaFormerSpec | ConvMixerSpec, side: int | None = None) -> nn.Module:
    """Train-mode forward/backward on a random batch: output shape, finiteness, gradient flow."""
    torch.manual_seed(0)
    model = build_model(spec).train()
    side = side or spec.img_size
    x = torch.randn(BATCH, spec.in_chans, side, side)
    out = model(x)
    assert out.shape == (BATCH, spec.num_classes), (
        f"expected output {(BATCH, spec.num_classes)}, got {tuple(out.shape)}"
    )
    assert torch.isfinite(out).all(), "non-finite outputs"
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"trainable parameters without a gradient: {missing[:8]}"
    bad = [n for n, p in model.named_parameters()
           if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad[:8]}"
    stem = next(m for m in model.stem.modules() if isinstance(m, nn.Conv2d)).weight
    assert stem.grad is not None and stem.grad.abs().sum() > 0, "no gradient reaches the stem"
    return model


# --------------------------------------------------------------------------- mixers


@pytest.mark.parametrize("side", RESOLUTIONS)
@pytest.mark.parametrize("mixer", MIXERS.names())
def test_every_mixer_forward_backward(mixer: str, side: int) -> None:
    """Three stages of the mixer; the random mixer builds its matrices for this resolution."""
    stem_stride = 2 if side <= 32 else 4
    spec = _tiny((mixer,) * 3, img_size=side, stem_stride=stem_stride)
    model = _forward_backward(spec)
    if mixer == "random":
        sizes = [m.random_matrix.shape[0] for m in model.modules() if hasattr(m, "random_matrix")]
        expected = [h * w for h, w in stage_grids(spec)]
        assert sizes == expected, f"random matrices for {expected} tokens, got {sizes}"


@pytest.mark.parametrize("mixer", MIXERS.names())
def test_every_mixer_in_a_mixed_network(mixer: str) -> None:
    """The mixer after a conv stage and before an attention stage, with both scales on."""
    spec = _tiny(("sepconv", mixer, "attention"), layer_scale=0.5, res_scale=1.0, head="mlp")
    _forward_backward(spec)


@pytest.mark.parametrize("mixer", MIXERS.names())
def test_mixer_preserves_shape(mixer: str) -> None:
    mdef = MIXERS.get(mixer)
    dim, grid = 16, (5, 5)
    module = mdef.build(dim, grid, **mdef.resolve(_head_dim_args(mixer)))
    x = torch.randn(BATCH, dim, *grid) if mdef.layout == "nchw" else torch.randn(BATCH, 25, dim)
    y = module(x)
    assert y.shape == x.shape, (
        f"{mixer} ({mdef.layout}): expected {tuple(x.shape)}, got {tuple(y.shape)}"
    )


# --------------------------------------------------------------------------- norms


@pytest.mark.parametrize("norm", NORMS.names())
def test_every_norm_in_both_layouts(norm: str) -> None:
    """Stage 1 is NCHW (pooling), stage 2 tokens (attention): the norm is built in each layout."""
    spec = _tiny(("pooling", "attention"), norm=norm)
    model = _forward_backward(spec)
    nchw_cls = type(NORMS.get(norm).nchw(8))
    tokens_cls = type(NORMS.get(norm).tokens(8))
    got = (type(model.stages[0].blocks[0].norm1), type(model.stages[1].blocks[0].norm1))
    assert got == (nchw_cls, tokens_cls), f"{norm}: expected {(nchw_cls, tokens_cls)}, got {got}"


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("norm", NORMS.names())
def test_norm_layouts_compute_the_same_operation(norm: str, train: bool) -> None:
    """nchw(x) == tokens(x as (B, N, C)): a norm name is one operation whatever the layout."""
    torch.manual_seed(0)
    c = 6
    a, b = build_norm(norm, c, "nchw"), build_norm(norm, c, "tokens")
    with torch.no_grad():
        for p in a.parameters():
            p.copy_(torch.randn_like(p))
    b.load_state_dict(a.state_dict())
    a.train(train)
    b.train(train)
    x = torch.randn(3, c, 4, 5) * 2 + 1
    y_nchw = a(x)
    y_tokens = b(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(x.shape)
    err = (y_nchw - y_tokens).abs().max().item()
    assert err < 1e-5, f"{norm}: max |nchw - tokens| expected < 1e-5, got {err:.3g}"
    assert sum(p.numel() for p in a.parameters()) == c * NORMS.get(norm).params_per_channel, (
        f"{norm}: expected {c * NORMS.get(norm).params_per_channel} params, "
        f"got {sum(p.numel() for p in a.parameters())}"
    )


# --------------------------------------------------------------------------- activations


@pytest.mark.parametrize("act", ACTS.names())
def test_every_activation_metaformer(act: str) -> None:
    spec = _tiny(("sepconv", "ufo"), act=act)
    model = _forward_backward(spec)
    acts = {type(m.mlp.act) for s in model.stages for m in s.blocks}
    expected = type(ACTS.get(act).factory())
    assert acts == {expected}, f"expected MLP activation {expected}, got {acts}"


@pytest.mark.parametrize("act", ACTS.names())
def test_every_activation_convmixer(act: str) -> None:
    spec = ConvMixerSpec(width=16, depth=2, kernel_size=3, patch_size=4, act=act,
                         num_classes=5, img_size=32)
    _forward_backward(spec)


# --------------------------------------------------------------------------- stems, heads, misc


@pytest.mark.parametrize("head", ["linear", "mlp"])
@pytest.mark.parametrize("stem_stride", STEM_STRIDES)
@pytest.mark.parametrize("stem", STEMS)
def test_stems_and_heads(stem: str, stem_stride: int, head: str) -> None:
    spec = _tiny(("pooling", "sepconv"), stem=stem, stem_stride=stem_stride, head=head,
                 img_size=24)
    model = _forward_backward(spec)
    has_norm = not isinstance(model.stem.norm, nn.Identity)
    assert has_norm == (stem == "v2"), f"stem {stem}: post-norm expected {stem == 'v2'}"


def test_mlp_bias_and_in_chans() -> None:
    spec = MetaFormerSpec(stages=(StageSpec(1, 8, "pooling"), StageSpec(2, 16, "identity")),
                          stem="v1", mlp_bias=True, in_chans=1, num_classes=3, img_size=20)
    model = _forward_backward(spec)
    assert model.stages[1].blocks[1].mlp.fc1.bias is not None, "mlp_bias=True must add biases"


@pytest.mark.parametrize("side", RESOLUTIONS)
def test_resolution_agnostic_models_run_at_other_sizes(side: int) -> None:
    """Everything but the random mixer runs at any input size once built."""
    spec = _tiny(("sepconv", "pooling", "attention", "ufo"), img_size=32)
    _forward_backward(spec, side=side)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_convmixer_tiny_even_kernel() -> None:
    """ConvMixer's depthwise conv uses padding='same', so even kernels are allowed."""
    spec = ConvMixerSpec(width=8, depth=1, kernel_size=4, patch_size=3, num_classes=2,
                         img_size=20)
    _forward_backward(spec)
