"""proxies.cpu_kernels: the CPU training path computes what PyTorch computes, for every mixer.

Each case builds a model twice from one seed, passes one copy through ``speed_up`` and compares
the outputs and every parameter's gradient against the untouched copy (float rounding only:
the kernels sum in another order). Driven by the model library's registries, so a new mixer,
norm or activation is covered without editing this file.
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
from timm.models.metaformer import StarReLU
from torch import nn

from nas.models import MIXERS, ConvMixerSpec, MetaFormerSpec, StageSpec, build_model
from nas.models.layers import ACTS, NORMS
from proxies import DatasetInfo, TrainConfig, train_proxy
from proxies.cpu_kernels import DepthwiseConv2dNHWC, StarReLUFused, speed_up

RTOL = 1e-4  # of the largest entry of each tensor ...
FLOOR = 1e-5  # ... or of the model's largest gradient entry, for gradients that are rounding
#               noise around zero (e.g. a bias followed by a normalization)


def _assert_close(got: torch.Tensor, want: torch.Tensor, what: str, floor: float = 0.0) -> None:
    scale = max(want.abs().max().item(), floor) or 1.0
    err = (got - want).abs().max().item() / scale
    assert err <= RTOL, f"{what}: max error {err:.2e} of its largest entry (allowed {RTOL:g})"


def _compare(spec, side: int = 32, batch: int = 4) -> int:
    """Forward + backward of `spec` with and without speed_up; returns the swapped count."""
    torch.manual_seed(0)
    ref = build_model(spec).train()
    fast = copy.deepcopy(ref)
    swapped = speed_up(fast)
    x = torch.randn(batch, 3, side, side)
    out_ref, out_fast = ref(x), fast(x.contiguous(memory_format=torch.channels_last))
    _assert_close(out_fast, out_ref, "output")
    grad_out = torch.randn_like(out_ref)
    out_ref.backward(grad_out)
    out_fast.backward(grad_out)
    floor = FLOOR / RTOL * max(p.grad.abs().max().item() for p in ref.parameters()
                               if p.grad is not None)
    for (name, p_ref), (name_fast, p_fast) in zip(ref.named_parameters(),
                                                  fast.named_parameters()):
        assert name == name_fast
        if p_ref.grad is None:
            assert p_fast.grad is None, f"{name}: a gradient where PyTorch has none"
            continue
        _assert_close(p_fast.grad, p_ref.grad, f"gradient of {name}", floor)
    return swapped


def _spec(mixers: tuple[str, ...], **stage_kw) -> MetaFormerSpec:
    stages = tuple(
        StageSpec(depth=2, width=16 + 8 * i, mixer=m,
                  mixer_args={"head_dim": 8} if "head_dim" in MIXERS.get(m).defaults else {},
                  **stage_kw)
        for i, m in enumerate(mixers))
    return MetaFormerSpec(stages=stages, stem="v2", stem_stride=2, head="mlp", num_classes=7,
                          img_size=32)


@pytest.mark.parametrize("mixer", MIXERS.names())
def test_every_mixer_matches_pytorch(mixer: str) -> None:
    """The mixer between a conv stage and an attention stage (so depthwise convs and StarReLU
    are always present), both scales on."""
    spec = _spec(("sepconv", mixer, "attention", mixer), layer_scale=0.5, res_scale=1.0)
    assert _compare(spec) > 0


@pytest.mark.parametrize("norm", NORMS.names())
def test_every_norm_matches_pytorch(norm: str) -> None:
    _compare(_spec(("sepconv", "pooling", "sepconv", "attention"), norm=norm))


@pytest.mark.parametrize("act", ACTS.names())
def test_every_activation_matches_pytorch(act: str) -> None:
    _compare(_spec(("sepconv", "sepconv", "attention", "attention"), act=act))


@pytest.mark.parametrize("kernel_size", [3, 4, 5, 9])
def test_convmixer_matches_pytorch(kernel_size: int) -> None:
    """ConvMixer's depthwise convs have a bias and "same" padding (an even kernel is padded
    unevenly, which the fast path leaves to PyTorch)."""
    spec = ConvMixerSpec(width=16, depth=2, kernel_size=kernel_size, patch_size=2,
                         num_classes=5, img_size=16)
    swapped = _compare(spec, side=16)
    assert swapped == (0 if kernel_size % 2 == 0 else 2)


@pytest.mark.parametrize("side,kernel,bias", [(16, 7, False), (4, 5, True), (2, 7, False),
                                              (1, 3, True), (5, 3, False)])
def test_depthwise_conv_kernel(side: int, kernel: int, bias: bool) -> None:
    """Kernels larger than the grid, odd grids and a bias: all borders of the weight gradient."""
    torch.manual_seed(side)
    conv = nn.Conv2d(24, 24, kernel, padding=kernel // 2, groups=24, bias=bias)
    fast = copy.deepcopy(conv)
    fast.__class__ = DepthwiseConv2dNHWC
    x = torch.randn(3, 24, side, side, requires_grad=True)
    x_fast = x.detach().clone().requires_grad_()
    g = torch.randn(3, 24, side, side)
    conv(x).backward(g)
    out = fast(x_fast)
    assert out.shape == x.shape
    out.backward(g)
    _assert_close(x_fast.grad, x.grad, "input gradient")
    _assert_close(fast.weight.grad, conv.weight.grad, "weight gradient")
    if bias:
        _assert_close(fast.bias.grad, conv.bias.grad, "bias gradient")


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "tokens", "strided"])
def test_star_relu_fused(layout: str) -> None:
    torch.manual_seed(1)
    act = StarReLU(scale_value=0.8, bias_value=-0.1)
    fused = copy.deepcopy(act)
    fused.__class__ = StarReLUFused
    x = torch.randn(4, 6, 5, 5)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "tokens":
        x = x.flatten(2).transpose(1, 2).contiguous()
    elif layout == "strided":
        x = x[:, ::2]  # not dense: copied first
    x_ref = x.clone().requires_grad_()
    x_fused = x.clone().requires_grad_()
    y_ref, y_fused = act(x_ref), fused(x_fused)
    _assert_close(y_fused, y_ref, "output")
    g = torch.randn_like(y_ref).transpose(0, 1).contiguous().transpose(0, 1)  # another layout
    y_ref.backward(g)
    y_fused.backward(g)
    _assert_close(x_fused.grad, x_ref.grad, "input gradient")
    _assert_close(fused.scale.grad, act.scale.grad, "scale gradient")
    _assert_close(fused.bias.grad, act.bias.grad, "bias gradient")


def test_swapped_model_saves_copies_and_falls_back() -> None:
    """Same state-dict keys and values, picklable, still nn.Conv2d / StarReLU; float64 and
    no-grad inference run PyTorch's own code."""
    spec = _spec(("sepconv", "sepconv", "attention", "attention"))
    torch.manual_seed(0)
    model = build_model(spec)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    speed_up(model)
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert any(type(m) is DepthwiseConv2dNHWC for m in model.modules())
    assert any(type(m) is StarReLUFused for m in model.modules())
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _assert_close(loaded(x), model(x), "pickled model")
    model64 = copy.deepcopy(model).double()
    out64 = model64(x.double())
    out64.sum().backward()
    assert out64.dtype == torch.float64
    assert all(p.grad is not None for p in model64.parameters() if p.requires_grad)


def test_train_proxy_with_and_without_cpu_kernels(digits: DatasetInfo) -> None:
    """One epoch of a sepconv/StarReLU proxy: ``train_proxy`` swaps the kernels in by default
    and learns the same model as PyTorch's own ops up to float rounding; ``cpu_kernels=False``
    leaves the model alone."""
    spec = _spec(("sepconv", "sepconv", "attention", "attention"))
    models = {}
    results = {}
    for on in (True, False):
        torch.manual_seed(0)
        models[on] = build_model(spec, num_classes=digits.num_classes)
        results[on] = train_proxy(models[on], digits, TrainConfig(epochs=1, seed=0,
                                                                  cpu_kernels=on))
    kinds = {on: {type(m) for m in models[on].modules()} for on in (True, False)}
    assert {DepthwiseConv2dNHWC, StarReLUFused} <= kinds[True]
    assert not {DepthwiseConv2dNHWC, StarReLUFused} & kinds[False]
    assert results[True].accuracy > 0.3  # chance is 0.1
    assert abs(results[True].accuracy - results[False].accuracy) <= 0.02
    assert abs(results[True].final_train_loss - results[False].final_train_loss) <= 0.02
