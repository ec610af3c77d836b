"""Zero-cost proxies: definitions, MetaFormer pitfalls, the model left untouched, determinism."""

from __future__ import annotations

import math

import pytest
import torch
from timm.models.metaformer import StarReLU
from torch import nn

from nas.models.arch import MetaFormerSpec, StageSpec
from nas.models.model import Block, build_model
from proxies import (
    DatasetInfo,
    ZeroCostError,
    list_zero_cost,
    register_zero_cost,
    zero_cost_score,
    zero_cost_scores,
)
from proxies.zero_cost import naswot_units
from proxies.zero_cost._registry import _PROXIES

NAMES = ["grad_norm", "jacob_cov", "naswot", "params", "snip", "synflow", "synflow_ones"]
BATCH = 16


def _spec(mixers: tuple[str, ...], act: str = "starrelu", head: str = "mlp",
          norm0: str = "ln_nobias", pool_size: int = 3) -> MetaFormerSpec:
    """4 stages of depth 1, widths 8/16/32/48, 32 px, stem stride 2, 10 classes."""
    args = {"pooling": {"pool_size": pool_size}, "attention": {"head_dim": 16}}
    stages = tuple(StageSpec(depth=1, width=w, mixer=m, mixer_args=args.get(m, {}), act=act,
                             norm=norm0 if i == 0 else "ln_nobias")
                   for i, (w, m) in enumerate(zip((8, 16, 32, 48), mixers)))
    return MetaFormerSpec(stages=stages, img_size=32, stem_stride=2, num_classes=10, head=head)


def _build(spec: MetaFormerSpec, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(spec, **kwargs)


# sepconv + attention, GELU in the attention stages, BatchNorm in stage 1 (buffers to protect)
HYBRID = _spec(("sepconv", "sepconv", "attention", "attention"), norm0="bn")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one thread is fastest, and 2 threads on 2 busy cores are ~50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(BATCH, 3, 32, 32, generator=g), torch.randint(0, 10, (BATCH,), generator=g)


@pytest.fixture(scope="module")
def hybrid() -> nn.Module:
    return _build(HYBRID)


# --------------------------------------------------------------------------- registry


def test_registry_lists_the_proxies_and_filters_with_wildcards():
    assert list_zero_cost() == NAMES
    assert list_zero_cost("synflow*") == ["synflow", "synflow_ones"]


def test_unknown_name_lists_the_known_ones_and_suggests_the_closest(hybrid, batch):
    with pytest.raises(ZeroCostError) as info:
        zero_cost_score("synflw", hybrid, *batch)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert all(name in message for name in NAMES), message
    assert "did you mean 'synflow'?" in message, message


def test_registering_a_name_twice_warns_and_keeps_the_newer():
    try:
        register_zero_cost("_test_const")(lambda model, images, labels: 1.0)
        with pytest.warns(UserWarning, match="overwriting zero-cost proxy '_test_const'"):
            register_zero_cost("_test_const")(lambda model, images, labels: 2.0)
        assert zero_cost_score("_test_const", nn.Linear(2, 2), torch.ones(3, 2),
                               torch.zeros(3, dtype=torch.long)) == 2.0
    finally:
        _PROXIES.pop("_test_const", None)


# --------------------------------------------------------------------------- every proxy


@pytest.mark.parametrize("name", NAMES)
def test_each_proxy_gives_a_finite_float_on_a_hybrid_metaformer(name, hybrid, batch):
    score = zero_cost_score(name, hybrid, *batch)
    assert type(score) is float and math.isfinite(score), f"{name}: {score!r}"


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", NAMES)
def test_scoring_leaves_the_model_and_the_rng_exactly_as_they_were(name, mode, batch):
    model = _build(HYBRID).train(mode == "train")
    model.stem.conv.bias.requires_grad_(False)
    model.head.fc.fc2.weight.grad = torch.full_like(model.head.fc.fc2.weight, 0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: m.training for n, m in model.named_modules()}
    needs_grad = {n: p.requires_grad for n, p in model.named_parameters()}
    rng = torch.get_rng_state()

    zero_cost_score(name, model, *batch)

    after = model.state_dict()
    assert after.keys() == before.keys()
    changed = [k for k in before if after[k].dtype != before[k].dtype
               or not torch.equal(after[k], before[k])]
    assert changed == [], f"{name} changed {changed}"
    assert {n: m.training for n, m in model.named_modules()} == flags
    assert {n: p.requires_grad for n, p in model.named_parameters()} == needs_grad
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert grads == {"head.fc.fc2.weight"}, grads
    assert torch.equal(model.head.fc.fc2.weight.grad,
                       torch.full_like(model.head.fc.fc2.weight, 0.5))
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in model.modules())
    assert torch.equal(torch.get_rng_state(), rng)


def test_synflow_keeps_a_float64_model_float64(batch):
    model = _build(HYBRID).double()  # the reference casts back with net.float()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    zero_cost_score("synflow", model, *batch)
    assert all(v.dtype == before[k].dtype and torch.equal(v, before[k])
               for k, v in model.state_dict().items())


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_score_even_with_dropout(name, batch):
    model = _build(HYBRID, drop_rate=0.5, drop_path_rate=0.2)  # train-mode randomness
    first = zero_cost_score(name, model, *batch, seed=3)
    again = zero_cost_score(name, model, *batch, seed=3)
    assert first == again, f"{name}: {first!r} != {again!r}"


def test_seed_reaches_the_randomness(batch):
    model = _build(HYBRID, drop_rate=0.5)
    for name in ("grad_norm", "synflow"):  # dropout / synflow's random input
        assert zero_cost_score(name, model, *batch, seed=0) != \
            zero_cost_score(name, model, *batch, seed=1), name


# --------------------------------------------------------------------------- definitions


def test_definitions_on_a_single_linear_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    images, labels = torch.randn(6, 3, 2, 2), torch.tensor([0, 1, 2, 3, 4, 0])
    w = model[1].weight
    loss = nn.functional.cross_entropy(model(images), labels)
    (grad,) = torch.autograd.grad(loss, w)

    assert zero_cost_score("grad_norm", model, images, labels) == pytest.approx(
        grad.norm().item(), rel=1e-6)
    assert zero_cost_score("snip", model, images, labels) == pytest.approx(
        (w * grad).abs().sum().item(), rel=1e-6)
    # all-ones input, |W|: dR/dW = 1 everywhere, so synflow is sum |W|
    assert zero_cost_score("synflow_ones", model, images, labels) == pytest.approx(
        w.double().abs().sum().item(), rel=1e-9)
    assert zero_cost_score("params", model, images, labels) == 12 * 5 + 5
    # a linear net has the same input Jacobian for every image: C is all ones, eigenvalues n, 0..
    n, k = 6, 1e-5
    expected = -(math.log(n + k) + 1 / (n + k) + (n - 1) * (math.log(k) + 1 / k))
    assert zero_cost_score("jacob_cov", model, images, labels) == pytest.approx(expected, rel=1e-6)


def test_naswot_is_the_logdet_of_the_hamming_kernel():
    images = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    codes = (images > 0).double()
    kernel = codes @ codes.T + (1 - codes) @ (1 - codes).T  # units - Hamming distance
    expected = torch.linalg.slogdet(kernel).logabsdet.item()
    score = zero_cost_score("naswot", nn.ReLU(), images, torch.zeros(5, dtype=torch.long))
    assert score == pytest.approx(expected, rel=1e-12)


def test_params_counts_trainable_parameters_only(hybrid, batch):
    total = sum(p.numel() for p in hybrid.parameters())
    model = _build(HYBRID)
    model.head.fc.fc2.requires_grad_(False)
    frozen = sum(p.numel() for p in model.head.fc.fc2.parameters())
    assert zero_cost_score("params", hybrid, *batch) == total
    assert zero_cost_score("params", model, *batch) == total - frozen


# --------------------------------------------------------------------------- MetaFormer pitfalls


def _poolformer_without_padding(pool_size: int) -> nn.Module:
    """1x1 stem, two PoolFormer blocks (nas.model.Block), pooled linear head: no zero padding
    anywhere before the pooling, so an all-ones input stays spatially constant through it."""
    torch.manual_seed(0)
    stage = StageSpec(depth=1, width=16, mixer="pooling", mixer_args={"pool_size": pool_size})
    return nn.Sequential(
        nn.Conv2d(3, 16, 1),
        Block(stage, (8, 8), "nchw", 0.0, False),
        Block(stage, (8, 8), "nchw", 0.0, False),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


def test_all_ones_synflow_cannot_see_pooling_but_synflow_can():
    images, labels = torch.zeros(4, 3, 8, 8), torch.zeros(4, dtype=torch.long)
    # pool_size 1 makes avgpool(x) - x exactly 0: the same net without any token mixing
    ones = {k: zero_cost_score("synflow_ones", _poolformer_without_padding(k), images, labels)
            for k in (1, 3, 5)}
    ours = {k: zero_cost_score("synflow", _poolformer_without_padding(k), images, labels)
            for k in (1, 3, 5)}
    assert ones[3] == pytest.approx(ones[1], rel=1e-9) and ones[5] == pytest.approx(
        ones[1], rel=1e-9), f"all-ones synflow saw the pooling: {ones}"
    assert abs(ours[3] / ours[1] - 1) > 0.05, f"synflow missed the pooling: {ours}"
    assert abs(ours[5] / ours[3] - 1) > 1e-3, f"synflow missed the pool size: {ours}"


def test_synflow_scores_a_pooling_only_metaformer():
    for pool_size in (1, 3):
        model = _build(_spec(("pooling",) * 4, pool_size=pool_size))
        score = zero_cost_score("synflow", model, torch.zeros(2, 3, 32, 32),
                                torch.zeros(2, dtype=torch.long))
        assert math.isfinite(score) and score > 0


def test_naswot_hooks_gelu_starrelu_and_squaredrelu_once_each():
    spec = MetaFormerSpec(stages=(StageSpec(1, 8, "sepconv"), StageSpec(1, 16, "pooling"),
                                  StageSpec(1, 32, "attention", {"head_dim": 16}, act="gelu"),
                                  StageSpec(1, 48, "attention", {"head_dim": 16}, act="gelu")),
                          img_size=32, stem_stride=2, num_classes=10)
    units = naswot_units(_build(spec))
    kinds = [type(m).__name__ for _, m in units]
    # 4 MLP activations, SepConv's StarReLU, the MlpHead's SquaredReLU; never the inner nn.ReLU
    assert sorted(kinds) == ["GELU", "GELU", "SquaredReLU", "StarReLU", "StarReLU", "StarReLU"]
    assert not any(name.endswith(".relu") for name, _ in units), units
    assert all(isinstance(m, StarReLU) for n, m in units if n.endswith("act1")), units


def test_naswot_scores_a_gelu_only_net_the_name_rule_cannot_see(batch):
    model = _build(_spec(("pooling",) * 4, act="gelu", head="linear"))
    assert [m for m in model.modules() if "ReLU" in type(m).__name__] == []  # reference: -inf
    units = naswot_units(model)
    assert len(units) == 4 and all(type(m) is nn.GELU for _, m in units), units
    assert math.isfinite(zero_cost_score("naswot", model, *batch))


def test_naswot_without_activations_or_with_duplicate_images_raises(hybrid, batch):
    linear = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                           nn.Linear(4, 10))
    with pytest.raises(ZeroCostError, match="has none"):
        zero_cost_score("naswot", linear, *batch)
    images, labels = batch
    twice = torch.cat([images[:8], images[:8]])
    with pytest.raises(ZeroCostError, match="singular"):
        zero_cost_score("naswot", hybrid, twice, labels)


def test_weight_proxies_need_conv_or_linear_layers(batch):
    no_weights = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())  # 3 "logits"
    labels = torch.zeros(BATCH, dtype=torch.long)
    for name in ("grad_norm", "snip", "synflow"):
        with pytest.raises(ZeroCostError, match="Conv/Linear"):
            zero_cost_score(name, no_weights, batch[0], labels)


# --------------------------------------------------------------------------- benchmark helper


def test_zero_cost_scores_builds_a_fresh_model_per_proxy_on_one_fixed_batch(digits: DatasetInfo):
    built = []

    def factory() -> nn.Module:
        built.append(1)
        return _build(HYBRID)

    names = ["params", "naswot", "synflow"]
    scores = zero_cost_scores(factory, digits, names, batch_size=BATCH, seed=0)
    assert list(scores) == names and len(built) == 3
    assert all(math.isfinite(v) for v in scores.values()), scores
    assert zero_cost_scores(factory, digits, names, batch_size=BATCH, seed=0) == scores
    with pytest.raises(ZeroCostError, match="naswot"):
        zero_cost_scores(factory, digits, ["naswat"])
    assert len(built) == 6  # the unknown name failed before any model was built
