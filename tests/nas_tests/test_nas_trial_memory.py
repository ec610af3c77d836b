"""A proxy that cannot fit in memory fails its trial in one line, before it is built; an
allocation that fails anyway (the estimate is a lower bound) does too, and frees the model."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nas._memory import available_memory, training_bytes
from nas._trainable import TrialContext, trainable
from nas.models import analytic_cost, to_dict
from proxies import prepare_dataset
from search_spaces import Space

TINY = Path(__file__).resolve().parents[2] / "search_spaces" / "tiny.yaml"


def _config(space: Space, seed: int = 0) -> dict:
    arch, _ = space.sample_random(seed)
    return {"arch": to_dict(arch), "proxy_arch": to_dict(space.proxy(arch, 10))}


def _ctx() -> TrialContext:
    return TrialContext(dataset=prepare_dataset("digits"), epochs=1, batch_size=64, lr=1e-3,
                        seed=0, repeats=1, compile=False, threads=1)


def test_a_proxy_too_big_for_memory_fails_its_trial_before_it_is_built():
    # a space that validates (widths 4,096 and up) whose proxies need tens of GB: a search of
    # it died in the allocator, then again recording the failure, in 184 lines of tracebacks
    doc = yaml.safe_load(TINY.read_text())
    doc["width"]["base"], doc["width"]["divisor"] = [4096, 8192], 64
    doc["mixers"]["attention"]["head_dim"] = 64
    space = Space(doc, "wide.yaml")
    config = _config(space)
    cost = analytic_cost(space.proxy(space.sample_random(0)[0], 10))
    free = available_memory()
    assert free is not None and training_bytes(cost, 64) > free, (cost, free)
    reports = []
    trainable(config, _ctx(), report=reports.append)
    (last,) = reports  # no epoch ran
    assert last["failure"].startswith("the proxy needs at least "), last
    assert f"({cost.params / 1e6:,.1f} M params, " in last["failure"]
    assert "\n" not in last["failure"] and last["curve"] == []


def test_an_allocation_failure_while_training_fails_the_trial_in_one_line(monkeypatch):
    import torch

    import proxies

    def allocates_too_much(model, *args, **kwargs):
        torch.empty(1 << 60)  # PyTorch's CPU allocator refuses: a real allocation failure

    monkeypatch.setattr(proxies, "train_proxy", allocates_too_much)
    reports = []
    trainable(_config(Space(yaml.safe_load(TINY.read_text()), "tiny.yaml")), _ctx(),
              report=reports.append)
    (last,) = reports
    assert last["failure"].startswith("out of memory training the proxy: "), last
    assert "can't allocate memory" in last["failure"] and "\n" not in last["failure"]


def test_other_errors_while_training_are_not_taken_for_memory(monkeypatch):
    import proxies

    def breaks(model, *args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(proxies, "train_proxy", breaks)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        trainable(_config(Space(yaml.safe_load(TINY.read_text()), "tiny.yaml")), _ctx(),
                  report=[].append)
