"""A new mixer is one registered definition: a space samples it, and it builds, costs and trains
without touching the space parser, the model builder or the cost model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nas.models import MIXERS, analytic_cost, build_model, traced_cost
from nas.models.mixers import register_mixer
from proxies import TrainConfig, prepare_dataset, train_proxy
from search_spaces import Space


def _cost(dim: int, grid: tuple[int, int], head_dim: int) -> tuple[int, int, int]:
    n = grid[0] * grid[1]
    return dim * head_dim, dim * head_dim * n, dim * n


@pytest.fixture
def grouped_pointwise():
    @register_mixer(layout="nchw", kind="local", defaults={"head_dim": 8}, cost=_cost,
                    width_multiple_of="head_dim",
                    description="1x1 conv mixing channels within groups of head_dim (test)")
    def grouped_pointwise(dim: int, grid: tuple[int, int], head_dim: int) -> nn.Module:
        return nn.Conv2d(dim, dim, 1, groups=dim // head_dim, bias=False)

    yield "grouped_pointwise"
    MIXERS.remove("grouped_pointwise")


DOC = {
    "name": "with_new_mixer",
    "description": "A space whose last stages can only take the newly registered mixer.",
    "resolution": 64,
    "num_classes": 10,
    "depth": {"total": [4, 8], "ratios": ["1:1:1:1"]},
    "width": {"base": [16, 32], "multipliers": "1:2:4:8", "divisor": 16},
    "stages": [{"mixer": ["sepconv", "pooling"]}, {"mixer": "pooling"},
               {"mixer": "grouped_pointwise"}, {"mixer": "grouped_pointwise"}],
    "mixers": {"grouped_pointwise": {"head_dim": [8, 16]}},
    "proxy": {"width_mult": 0.5, "depth_mult": 0.5, "resolution": 32, "stem_stride": 2},
}


def test_a_registered_mixer_is_sampled_built_costed_and_trained(grouped_pointwise, tmp_path):
    space = Space(DOC, "<test>")
    params = space.parameters()
    assert params["stage3/grouped_pointwise/head_dim"] == (8, 16), params
    archs = [space.sample_random(seed)[0] for seed in range(4)]
    assert all(a.stages[3].mixer == grouped_pointwise for a in archs)
    assert {a.stages[3].args["head_dim"] for a in archs} <= {8, 16}
    for arch in archs:
        assert analytic_cost(arch) == traced_cost(arch), arch
        proxy = space.proxy(arch, 10)
        assert analytic_cost(proxy) == traced_cost(proxy), proxy
        assert all(s.width % s.args.get("head_dim", 1) == 0 for s in proxy.stages), proxy

    with pytest.raises(Exception, match="multiples of head_dim"):  # the width rule is enforced
        Space({**DOC, "mixers": {"grouped_pointwise": {"head_dim": [8, 48]}}}, "<test>")

    dataset = prepare_dataset("digits", tmp_path, resolution=32)
    torch.manual_seed(0)
    model = build_model(space.proxy(archs[0], dataset.num_classes))
    res = train_proxy(model, dataset, TrainConfig(epochs=1, batch_size=64, device="cpu",
                                                  threads=1))
    assert res.failure is None and res.steps > 0, res
    assert 0.0 <= res.accuracy <= 1.0 and res.final_train_loss > 0, res
