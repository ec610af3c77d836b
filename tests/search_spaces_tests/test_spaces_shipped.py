"""Contract test of every shipped space: loads, samples (random and Optuna), validates, builds."""

from __future__ import annotations

import json

import optuna
import pytest
import torch

from nas.models.arch import ArchSpec, arch_hash, canonical_json, from_dict, to_dict
from nas.models.cost import analytic_cost
from nas.models.model import build_model, validate
from search_spaces import Space, load_space

from ._docs import SHIPPED

PROXY_CLASSES = 10  # the proxy dataset: 8x8 digits upsampled to 32x32
MAX_PROXY_MACS = 20e6  # a proxy must train in seconds on a CPU
EXPECTED = {"metaformer", "poolformer", "metaformer_baselines", "convmixer", "linear_attention",
            "hybrid_conv_attn", "tiny"}


@pytest.fixture(scope="module", params=SHIPPED)
def space(request: pytest.FixtureRequest) -> Space:
    return load_space(request.param)


def test_the_issue_spaces_are_shipped() -> None:
    assert EXPECTED <= set(SHIPPED), f"missing spaces: {sorted(EXPECTED - set(SHIPPED))}"


def test_loads_and_describes_itself(space: Space) -> None:
    stem = space.source.removesuffix(".yaml")
    assert space.name == stem, f"space name {space.name!r} differs from its file {space.source!r}"
    assert space.description.endswith((".", "?")) and len(space.description) > 40, (
        f"{space.name}: the description should state the question; got {space.description!r}")
    assert space.size() > 1, f"{space.name}: size {space.size()}"
    params = space.parameters()
    assert params and all(len(c) > 1 for c in params.values()), f"{space.name}: {params}"


def test_random_samples_validate_and_proxies_stay_small(space: Space) -> None:
    for seed in range(60):
        arch, params = space.sample_random(seed)
        validate(arch)
        assert space.violations(arch) == [], f"{space.name} seed {seed}: {space.violations(arch)}"
        assert set(params) <= set(space.parameters()), (
            f"{space.name} seed {seed}: {sorted(set(params) - set(space.parameters()))} "
            "not in parameters()")
        proxy = space.proxy(arch, PROXY_CLASSES)
        validate(proxy)
        assert (proxy.img_size, proxy.num_classes) == (32, PROXY_CLASSES), (
            f"{space.name}: proxy input/classes {(proxy.img_size, proxy.num_classes)}")
        macs = analytic_cost(proxy).macs
        assert macs < MAX_PROXY_MACS, (
            f"{space.name} seed {seed}: proxy {macs / 1e6:.1f} MMACs >= "
            f"{MAX_PROXY_MACS / 1e6:.0f} ({canonical_json(proxy)})")


def test_unconstrained_samples_have_valid_proxies(space: Space) -> None:
    """Constraints reject on cost only: every configuration, feasible or not, must build."""
    for seed in range(150):
        arch, _ = space.sample_random(seed, feasible=False)
        validate(arch)
        validate(space.proxy(arch, PROXY_CLASSES))


def test_proxies_build_and_run(space: Space) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    for seed in range(3):
        arch, _ = space.sample_random(1000 + seed)
        model = build_model(space.proxy(arch, PROXY_CLASSES)).eval()
        with torch.no_grad():
            out = model(x)
        assert tuple(out.shape) == (2, PROXY_CLASSES), (
            f"{space.name} seed {seed}: output {tuple(out.shape)} != (2, {PROXY_CLASSES})")
        assert torch.isfinite(out).all(), f"{space.name} seed {seed}: non-finite output"


def test_canonical_form(space: Space) -> None:
    for seed in range(20):
        arch, params = space.sample_random(seed)
        assert from_dict(to_dict(arch)) == arch, f"{space.name} seed {seed}: round trip changed"
        again = from_dict(json.loads(canonical_json(arch)))
        assert arch_hash(again) == arch_hash(arch), f"{space.name} seed {seed}: hash changed"
        replay = space.sample(optuna.trial.FixedTrial(params))
        assert arch_hash(replay) == arch_hash(arch), (
            f"{space.name} seed {seed}: params {params} replay to a different architecture")


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_optuna_study_drives_the_space(space: Space, sampler: str) -> None:
    """Real Optuna trials (ask/tell): names must keep one distribution each across trials,
    which Optuna checks itself, and conditional names must come and go with their mixer."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sampler == "tpe":
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    else:
        study = optuna.create_study(
            directions=["maximize", "minimize"],
            sampler=optuna.samplers.NSGAIISampler(population_size=4, seed=0))
    declared = space.parameters()
    hashes = set()
    for number in range(12):
        trial = study.ask()
        arch: ArchSpec = space.sample(trial)
        validate(arch)
        for name, value in trial.params.items():
            assert name in declared and value in declared[name], (
                f"{space.name} trial {number}: {name}={value!r} not in parameters()")
        cost = analytic_cost(arch)
        values = cost.params / 1e6 if sampler == "tpe" else [-cost.params / 1e6, cost.macs / 1e9]
        study.tell(trial, values)
        hashes.add(arch_hash(arch))
    assert len(hashes) > 1 or space.size() == 1, f"{space.name}: 12 trials, one architecture"


def test_tiny_stays_tiny() -> None:
    space = load_space("tiny")
    assert space.size() <= 100, f"tiny has {space.size()} configurations; keep it <= 100"
    for seed in range(20):
        arch, _ = space.sample_random(seed)
        macs = analytic_cost(arch).macs
        assert macs < 0.1e9, f"tiny seed {seed}: {macs / 1e9:.3f} GMACs >= 0.1"


def _stages(key: str, values: list) -> dict:
    return {f"stage{i + 1}/{key}": v for i, v in enumerate(values) if v is not None}


CAFORMER_S18 = {"depth/total": 18, "depth/ratios": "1:1:3:1", "width/base": 64,
                "width/multipliers": "1:2:5:8",
                **_stages("mixer", ["sepconv", "sepconv", "attention", "attention"]),
                "stage1/sepconv/kernel_size": 7, "stage2/sepconv/kernel_size": 7}
POOL3 = _stages("pooling/pool_size", [3] * 4)
PUBLISHED = [  # (space, preset, the parameters that give it)
    ("poolformer", "poolformer_s12", {"depth/total": 12, "depth/ratios": "1:1:3:1",
                                      "width/base": 64, "width/multipliers": "1:2:5:8",
                                      "layer_scale": 1e-5, **POOL3}),
    ("poolformer", "poolformer_m48", {"depth/total": 48, "depth/ratios": "1:1:3:1",
                                      "width/base": 96, "width/multipliers": "1:2:4:8",
                                      "layer_scale": 1e-6, **POOL3}),
    ("metaformer_baselines", "poolformerv2_s12", {
        "depth/total": 12, "depth/ratios": "1:1:3:1", "width/base": 64,
        "width/multipliers": "1:2:5:8", **_stages("mixer", ["pooling"] * 4)}),
    ("metaformer_baselines", "identityformer_m36", {
        "depth/total": 36, "depth/ratios": "1:1:3:1", "width/base": 96,
        "width/multipliers": "1:2:4:8", **_stages("mixer", ["identity"] * 4)}),
    ("metaformer_baselines", "randformer_s24", {
        "depth/total": 24, "depth/ratios": "1:1:3:1", "width/base": 64,
        "width/multipliers": "1:2:5:8",
        **_stages("mixer", ["identity", "identity", "random", "random"])}),
    ("convmixer", "convmixer_768_32", {"width": 768, "depth": 32, "kernel_size": 7,
                                       "patch_size": 7, "act": "relu"}),
    ("convmixer", "convmixer_1024_20_ks9_p14", {"width": 1024, "depth": 20, "kernel_size": 9,
                                                "patch_size": 14, "act": "gelu"}),
    ("hybrid_conv_attn", "caformer_s18", {**CAFORMER_S18, "act": "starrelu", "mlp_ratio": 4.0}),
    ("linear_attention", "caformer_s18", CAFORMER_S18),
    ("metaformer", "caformer_s18", {**CAFORMER_S18, "head": "mlp", "norm": "ln_nobias",
                                    "act": "starrelu"}),
]


@pytest.mark.parametrize("space_name, preset, params", PUBLISHED,
                         ids=[f"{s}:{p}" for s, p, _ in PUBLISHED])
def test_published_models_are_points_of_their_spaces(space_name: str, preset: str,
                                                     params: dict) -> None:
    presets = pytest.importorskip("nas.models.presets")
    space = load_space(space_name)
    arch = space.sample(optuna.trial.FixedTrial(params))
    expected = presets.get_preset(preset)
    assert canonical_json(arch) == canonical_json(expected), (
        f"{space_name} with {params}:\n  got      {canonical_json(arch)}\n"
        f"  expected {canonical_json(expected)} ({preset})")
    feasible = space.violations(arch) == []
    assert feasible, f"{preset} is infeasible in {space_name}: {space.violations(arch)}"
