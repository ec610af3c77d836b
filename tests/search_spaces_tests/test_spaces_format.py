"""The search-space format: rules, parameter names, canonical form, constraints, proxy, errors."""

from __future__ import annotations

import json
import os
import random
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest

from nas.errors import SpaceError
from nas.models.arch import (
    ConvMixerSpec,
    MetaFormerSpec,
    arch_hash,
    canonical_json,
    from_dict,
    to_dict,
)
from nas.models.cost import analytic_cost
from nas.models.model import validate
from search_spaces import (
    MAX_SPACE_BYTES,
    ProxySpec,
    Space,
    load_space,
    round_width,
    split_depth,
)

from ._docs import ScriptedTrial, small_doc

# --------------------------------------------------------------------------- a space in Python


def test_space_constructible_in_python() -> None:
    space = Space(small_doc(), source="<python>")
    assert (space.name, space.source, space.family) == ("small", "<python>", "metaformer"), (
        f"got {(space.name, space.source, space.family)}")
    arch, params = space.sample_random(0)
    assert isinstance(arch, MetaFormerSpec), f"expected a MetaFormerSpec, got {type(arch)}"
    validate(arch)
    assert set(params) <= set(space.parameters()), (
        f"sampled names {sorted(params)} not all in parameters() {sorted(space.parameters())}")
    doc = small_doc()
    doc["norm"] = "ln_nobais"
    with pytest.raises(SpaceError) as e:
        Space(doc, source="<python>")
    assert str(e.value).startswith("<python>: norm: "), f"got {e.value}"
    assert "did you mean 'ln_nobias'" in str(e.value), f"got {e.value}"


def test_tuples_are_lists_in_python_documents() -> None:
    doc = small_doc()
    doc["stages"] = tuple(doc["stages"])
    doc["stages"][0]["mixer"] = ("sepconv", "pooling")
    space = Space(doc, "<python>")
    assert space.parameters()["stage1/mixer"] == ("sepconv", "pooling"), (
        f"got {space.parameters().get('stage1/mixer')}")


def test_the_hash_a_study_records_ignores_the_description_only() -> None:
    """A study is held to its space's hash: editing the description must not refuse it, any
    other change must; the whole document's hash (what older studies hold) stays known."""
    doc = small_doc()
    del doc["description"]
    base = Space(doc, "<python>")
    assert base.hashes == (base.hash,), "no description: the two hashes are one"
    assert Space({**doc, "description": None}, "<python>").hash == base.hash  # `description:`
    described = Space({**doc, "description": "first words"}, "<python>")
    edited = Space({**doc, "description": "other words"}, "<python>")
    assert described.hash == edited.hash == base.hash
    assert len(described.hashes) == 2 and described.hashes[0] == described.hash
    assert described.hashes[1] != edited.hashes[1], "the whole document's hash sees the text"
    wider = {**doc, "width": {**doc["width"], "base": [16, 32, 48]}}
    renamed = {**doc, "name": "small2"}
    for changed in (wider, renamed):
        assert Space(changed, "<python>").hash != base.hash


# --------------------------------------------------------------------------- depth and width


def test_depth_rounding_rule() -> None:
    cases = {(12, (1, 1, 3, 1)): (2, 2, 6, 2), (18, (1, 1, 3, 1)): (3, 3, 9, 3),
             (4, (1, 1, 3, 1)): (1, 1, 2, 1), (36, (1, 4, 6, 1)): (3, 12, 18, 3),
             (5, (1, 1, 1, 1)): (1, 1, 1, 1), (7, (1, 1, 1, 1)): (2, 2, 2, 2)}
    for (total, ratio), expected in cases.items():
        got = split_depth(total, ratio)
        assert got == expected, f"split_depth({total}, {ratio}): expected {expected}, got {got}"
    space = Space(small_doc(), "<python>")
    arch = space.sample(ScriptedTrial({"depth/total": 8, "depth/ratios": "1:1:3:1"}))
    assert arch.depths == (1, 1, 4, 1), f"expected depths (1, 1, 4, 1), got {arch.depths}"


def test_width_rounding_rule() -> None:
    cases = {(240, 32): 256, (48 * 2, 32): 96, (5, 8): 8, (20, 8): 24, (12, 8): 16, (3, 16): 16}
    for (x, q), expected in cases.items():
        assert round_width(x, q) == expected, (
            f"round_width({x}, {q}): expected {expected}, got {round_width(x, q)}")
    doc = small_doc()
    doc["width"] = {"base": 48, "multipliers": ["1:2:5:8"], "divisor": 16}
    arch = Space(doc, "<python>").sample(ScriptedTrial())
    assert arch.widths == (48, 96, 240, 384), f"expected (48, 96, 240, 384), got {arch.widths}"


def test_depth_per_stage() -> None:
    doc = small_doc()
    doc["depth"] = {"per_stage": [[1, 2], 1, [2, 3, 4], 1]}
    space = Space(doc, "<python>")
    trial = ScriptedTrial({"stage1/depth": 2, "stage3/depth": 4})
    arch = space.sample(trial)
    assert arch.depths == (2, 1, 4, 1), f"expected depths (2, 1, 4, 1), got {arch.depths}"
    depth_names = sorted(n for n in trial.asked if "depth" in n)
    assert depth_names == ["stage1/depth", "stage3/depth"], f"got {depth_names}"
    assert trial.asked["stage3/depth"] == (2, 3, 4), f"got {trial.asked['stage3/depth']}"
    assert space.size() == 2 * 3 * Space(small_doc(), "<python>").size() // 4, (
        f"size with 2 x 3 per-stage depths instead of 2 totals x 2 ratios: got {space.size()}")


def test_width_lists() -> None:
    doc = small_doc()
    doc["width"] = {"lists": ["16:32:64:128", [32, 48, 96, 192]]}
    space = Space(doc, "<python>")
    assert space.parameters()["width/lists"] == ("16:32:64:128", "32:48:96:192"), (
        f"got {space.parameters()['width/lists']}")
    arch = space.sample(ScriptedTrial({"width/lists": "32:48:96:192"}))
    assert arch.widths == (32, 48, 96, 192), f"expected (32, 48, 96, 192), got {arch.widths}"
    assert not any(n.startswith("width/") and n != "width/lists" for n in space.parameters()), (
        f"got {sorted(space.parameters())}")


# --------------------------------------------------------------------------- parameter names


def test_global_and_stage_parameter_names() -> None:
    doc = small_doc()  # global norm [ln_nobias, gn1]; stage 3 overrides it with [ln, bn]
    doc["act"] = ["starrelu", "gelu"]
    doc["stages"][1]["act"] = ["relu", "silu"]
    doc["mlp_ratio"] = [4, 2]
    doc["layer_scale"] = [None, 1.0e-5]
    space = Space(doc, "<python>")
    trial = ScriptedTrial({"norm": "gn1", "stage3/norm": "bn", "act": "gelu",
                           "stage2/act": "silu", "mlp_ratio": 2.0, "layer_scale": 1e-5})
    arch = space.sample(trial)
    for name in ("norm", "stage3/norm", "act", "stage2/act", "mlp_ratio", "layer_scale"):
        assert name in trial.asked, f"{name!r} not suggested; asked {sorted(trial.asked)}"
    for name in ("stage1/norm", "stage2/norm", "stage4/norm", "stage1/act", "res_scale",
                 "stage4/res_scale"):
        assert name not in trial.asked, f"{name!r} suggested; asked {sorted(trial.asked)}"
    got = [(s.norm, s.act, s.mlp_ratio, s.layer_scale, s.res_scale) for s in arch.stages]
    expected = [("gn1", "gelu", 2.0, 1e-5, None), ("gn1", "silu", 2.0, 1e-5, None),
                ("bn", "gelu", 2.0, 1e-5, None), ("gn1", "gelu", 2.0, 1e-5, 1.0)]
    assert got == expected, f"expected {expected}, got {got}"


def test_global_name_absent_when_every_stage_overrides() -> None:
    doc = small_doc()
    for st in doc["stages"]:
        st["norm"] = ["ln", "bn"]
    trial = ScriptedTrial()
    Space(doc, "<python>").sample(trial)
    names = sorted(n for n in trial.asked if n.endswith("norm"))
    assert names == [f"stage{i}/norm" for i in range(1, 5)], f"got {names}"


@pytest.mark.parametrize("mixer", ["sepconv", "attention"])
def test_mixer_settings_only_when_that_mixer_is_chosen(mixer: str) -> None:
    space = Space(small_doc(), "<python>")
    trial = ScriptedTrial({"stage3/mixer": mixer})
    arch = space.sample(trial)
    assert arch.stages[2].mixer == mixer, f"expected {mixer}, got {arch.stages[2].mixer}"
    present = {"sepconv": "stage3/sepconv/kernel_size", "attention": "stage3/attention/head_dim"}
    for m, name in present.items():
        assert (name in trial.asked) == (m == mixer), (
            f"stage3/mixer={mixer}: {name!r} {'missing' if m == mixer else 'present'}; "
            f"asked {sorted(trial.asked)}")
    assert "stage4/attention/head_dim" in trial.asked, f"asked {sorted(trial.asked)}"
    assert not any("pooling" in n for n in trial.asked), (
        f"pool_size is fixed, so it is no parameter; asked {sorted(trial.asked)}")
    params = space.parameters()
    for name in present.values():
        assert name in params, f"parameters() lacks conditional {name!r}: {sorted(params)}"


def test_names_keep_their_choices_across_samples() -> None:
    space = Space(small_doc(), "<python>")
    declared = space.parameters()

    class RandomRecorder:
        def __init__(self, seed: int) -> None:
            self.rng, self.asked = random.Random(seed), {}

        def suggest_categorical(self, name: str, choices: Any) -> Any:
            self.asked[name] = tuple(choices)
            return self.rng.choice(list(choices))

    for seed in range(50):
        trial = RandomRecorder(seed)
        space.sample(trial)
        for name, choices in trial.asked.items():
            assert declared.get(name) == choices, (
                f"seed {seed}: {name!r} offered {choices}, parameters() says {declared.get(name)}")


# --------------------------------------------------------------------------- canonical form


def test_canonical_form_is_stable() -> None:
    space = Space(small_doc(), "<python>")
    for seed in range(30):
        arch, params = space.sample_random(seed)
        assert from_dict(to_dict(arch)) == arch, f"seed {seed}: to_dict/from_dict changed {arch}"
        again = from_dict(json.loads(canonical_json(arch)))
        assert arch_hash(again) == arch_hash(arch), f"seed {seed}: hash changed through JSON"
        replay = space.sample(optuna.trial.FixedTrial(params))
        assert arch_hash(replay) == arch_hash(arch), (
            f"seed {seed}: same params {params} gave {canonical_json(replay)} vs "
            f"{canonical_json(arch)}")


def test_equal_numbers_give_equal_hashes() -> None:
    """``mlp_ratio: 4`` and ``4.0``, ``expansion_ratio: 2`` and ``2.0``, ``res_scale: 1`` and
    ``1.0`` describe the same model, so they must give the same canonical JSON."""
    a, b = small_doc(), small_doc()
    a["mlp_ratio"], b["mlp_ratio"] = 4, 4.0
    a["stages"][3]["res_scale"], b["stages"][3]["res_scale"] = 1, "1.0"
    a["mixers"]["sepconv"]["expansion_ratio"], b["mixers"]["sepconv"]["expansion_ratio"] = 2, 2.0
    sa, sb = Space(a, "<a>"), Space(b, "<b>")
    for seed in range(10):
        ha, hb = arch_hash(sa.sample_random(seed)[0]), arch_hash(sb.sample_random(seed)[0])
        assert ha == hb, f"seed {seed}: {ha} != {hb}"
    stage = sa.sample_random(0)[0].stages[3]
    assert (stage.mlp_ratio, stage.res_scale) == (4.0, 1.0), f"got {stage}"
    assert isinstance(stage.mlp_ratio, float), f"expected a float, got {stage.mlp_ratio!r}"


def test_numeric_strings_are_numbers(tmp_path: Path) -> None:
    """PyYAML reads ``8.0e9`` and ``1e-5`` as strings; numeric fields accept them."""
    text = (Path(__file__).parents[2] / "search_spaces" / "tiny.yaml").read_text()
    text = text.replace("constraints:\n", "constraints:\n  max_macs: 8.0e9\n  max_params: 2e6\n")
    text += "layer_scale: [1e-5, 1e-6]\n"
    path = tmp_path / "numbers.yaml"
    path.write_text(text)
    space = load_space(path)
    assert (space.max_macs, space.max_params) == (8e9, 2e6), (
        f"expected (8e9, 2e6), got {(space.max_macs, space.max_params)}")
    assert space.parameters()["layer_scale"] == (1e-5, 1e-6), (
        f"got {space.parameters().get('layer_scale')}")


# --------------------------------------------------------------------------- constraints


def test_cost_constraints_reject_and_report() -> None:
    free = Space(small_doc(), "<python>")
    samples = [free.sample_random(seed, feasible=False)[0] for seed in range(60)]
    macs = [analytic_cost(a).macs for a in samples]
    params = [analytic_cost(a).params for a in samples]
    doc = small_doc()
    doc["constraints"] = {"max_macs": statistics.median(macs),
                          "max_params": f"{statistics.median(params):.6e}"}
    space = Space(doc, "<python>")
    for seed in range(40):
        arch, _ = space.sample_random(seed)
        cost = analytic_cost(arch)
        assert cost.macs <= space.max_macs and cost.params <= space.max_params, (
            f"seed {seed}: feasible sample costs {cost}; limits {space.max_macs}, "
            f"{space.max_params}")
        assert space.violations(arch) == [], f"seed {seed}: {space.violations(arch)}"
    big = samples[max(range(len(samples)), key=lambda i: macs[i])]
    found = space.violations(big)
    assert any(v.startswith("max_macs:") for v in found), f"max_macs not reported: {found}"
    assert any(v.startswith("max_params:") for v in found), f"max_params not reported: {found}"
    doc["constraints"] = {"max_macs": 1}
    with pytest.raises(SpaceError, match=r"^<python>: constraints: no feasible configuration"):
        Space(doc, "<python>").sample_random(0, max_tries=20)


def test_a_feasible_share_too_small_for_random_draws_is_found_by_the_local_search() -> None:
    # hybrid_conv_attn's cheapest configuration costs 0.363958 GMACs; counted one by one (25 s,
    # once by hand), 4 of its 110,592 configurations cost <= 0.365 G: 1 in 27,648, which
    # 1,000 draws miss (they were refused as infeasible) and even 20,000 usually miss
    import yaml

    text = (Path(__file__).parents[2] / "search_spaces" / "hybrid_conv_attn.yaml").read_text()
    assert "max_macs: 8.0e+9" in text

    def limited(limit: str) -> Space:
        return Space(yaml.safe_load(text.replace("max_macs: 8.0e+9", f"max_macs: {limit}")),
                     "rare.yaml")

    rare = limited("3.65e+8")
    rng = random.Random(0)
    assert not any(not rare.violations(rare.sample_random(rng, feasible=False)[0])
                   for _ in range(1000))
    found = set()
    for seed in range(3):
        arch, params = rare.sample_random(seed)
        assert rare.violations(arch) == [] and analytic_cost(arch).macs <= 3.65e8, arch
        assert arch_hash(rare.sample(ScriptedTrial(params))) == arch_hash(arch), params
        found.add(arch_hash(arch))
    # asked for new ones, it finds each of the four and then says there is none left
    rng = random.Random(1)
    for _ in range(8):
        arch, params, nearest = rare.local_search(rng, taken=found)
        if arch is None:
            break
        assert arch_hash(arch) not in found and rare.violations(arch) == [], arch
        found.add(arch_hash(arch))
    assert len(found) == 4 and nearest == [], (found, nearest)
    # just below the cheapest configuration, nothing meets the limit, and the line says how near
    # the search came
    with pytest.raises(SpaceError) as e:
        limited("3.6e+8").sample_random(0)
    assert str(e.value).startswith("rare.yaml: constraints: no feasible configuration in 1000 "
                                   "random draws (max_macs rejected 1000, e.g. "), e.value
    assert str(e.value).endswith(
        ") nor in a local search from 20 more (the nearest: max_macs: 0.364 GMACs > 0.36); "
        "loosen the constraints (`python -m nas spaces show SPACE` gives its cost ranges and "
        "feasible share)"), e.value


def test_structural_constraints_are_reported() -> None:
    doc = small_doc()
    doc["stages"][3]["mixer"] = ["attention", "sepconv"]
    doc["constraints"] = {"conv_before_attention": True}
    space = Space(doc, "<python>")
    arch = space.sample(ScriptedTrial({"stage3/mixer": "attention", "stage4/mixer": "sepconv"}))
    found = space.violations(arch)
    assert found and found[0].startswith("conv_before_attention: stage 4"), f"got {found}"
    for seed in range(20):
        arch, _ = space.sample_random(seed)
        assert arch.mixers[2:] != ("attention", "sepconv"), f"seed {seed}: infeasible {arch}"
    doc = small_doc()
    doc["width"] = {"lists": ["64:32:128:256", "16:32:64:128"]}
    space = Space(doc, "<python>")
    arch = space.sample(ScriptedTrial({"width/lists": "64:32:128:256"}))
    expected = ["nondecreasing_widths: widths [64, 32, 128, 256] decrease"]
    assert space.violations(arch) == expected, f"expected {expected}, got {space.violations(arch)}"


# --------------------------------------------------------------------------- proxy


def test_proxy_reduction_is_recorded_and_applied() -> None:
    space = Space(small_doc(), "<python>")
    assert space.proxy_spec == ProxySpec(width_mult=0.5, depth_mult=0.5, resolution=32,
                                         stem_stride=2, patch_size=2), f"got {space.proxy_spec}"
    for seed in range(40):
        arch, _ = space.sample_random(seed)
        proxy = space.proxy(arch, 10)
        validate(proxy)
        assert (proxy.img_size, proxy.num_classes, proxy.stem_stride) == (32, 10, 2), (
            f"got {(proxy.img_size, proxy.num_classes, proxy.stem_stride)}")
        widths = proxy.widths
        assert all(b > a for a, b in zip(widths, widths[1:])), f"not increasing: {widths}"
        assert all(w % 8 == 0 for w in widths), f"not multiples of 8: {widths}"
        expected_depths = tuple(max(1, int(d * 0.5 + 0.5)) for d in arch.depths)
        assert proxy.depths == expected_depths, f"expected {expected_depths}, got {proxy.depths}"
        keep = [(s.mixer, s.norm, s.act, s.res_scale) for s in arch.stages]
        got = [(s.mixer, s.norm, s.act, s.res_scale) for s in proxy.stages]
        assert got == keep, f"proxy changed the block recipe: {keep} -> {got}"
        for s in proxy.stages:
            if s.mixer == "attention":
                assert s.width % s.args["head_dim"] == 0, f"width {s.width}, {s.args}"


def test_a_space_that_lets_widths_shrink_keeps_them_in_the_proxy() -> None:
    """With ``nondecreasing_widths: false`` every step between stages goes in the proxy the way
    the full widths go: a step down stays one (it was raised, which made every such
    architecture a proxy twin of a growing one), and one that rounding made flat or turned
    round moves to the next multiple of the stage's quantum below (above where none is left);
    widths that grow keep the old rule. A lowered width too narrow for a setting is refused
    when the space loads."""
    import torch

    from nas.models import build_model

    lists = ["64:32:128:256", "64:56:128:256", "56:64:128:256", "16:8:128:256",
             "64:32:194:192"]
    doc = small_doc()
    doc["width"] = {"lists": lists}
    doc["stages"][2]["mixer"] = "sepconv"  # (194 is no multiple of a head_dim)
    doc["mixers"]["attention"] = {"head_dim": [32]}  # a proxy quantum of 16 (head_dim 16)
    doc["constraints"] = {"nondecreasing_widths": False}
    space = Space(doc, "<python>")
    got = {}
    for w in lists:
        proxy = space.proxy(space.sample(ScriptedTrial({"width/lists": w})), 10)
        validate(proxy)
        with torch.no_grad():
            out = build_model(proxy).eval()(torch.zeros(1, 3, 32, 32))
        assert out.shape == (1, 10), out.shape
        got[w] = proxy.widths
    assert got == {"64:32:128:256": (32, 16, 64, 128),
                   "64:56:128:256": (32, 24, 64, 128),  # 28 rounds to 32: flat, so lowered
                   "56:64:128:256": (32, 40, 64, 128),  # growing: raised, as ever
                   "16:8:128:256": (8, 16, 64, 128),  # nothing below 8 is left: raised
                   "64:32:194:192": (32, 16, 96, 80)}, got  # 97 and 96 round to 96: the
    #                                                      attention stage's quantum is 16
    doc["width"] = {"lists": ["64:56:128:256"]}
    doc["stages"][1]["mlp_ratio"] = 0.034  # 1 hidden channel at stage 2's own 32, none at 24
    with pytest.raises(SpaceError, match=r"^<python>: stages\[1\]\.mlp_ratio: 0\.034 x width 24 "):
        Space(doc, "<python>")


def test_convmixer_space_and_proxy() -> None:
    doc = {"name": "cm", "family": "convmixer", "resolution": 64, "width": [64, 128],
           "depth": [2, 4], "kernel_size": [3, 5], "patch_size": 4, "act": ["gelu", "relu"],
           "proxy": {"width_mult": 0.25, "depth_mult": 0.5, "resolution": 32, "patch_size": 2}}
    space = Space(doc, "<python>")
    assert space.size() == 16, f"expected 16 configurations, got {space.size()}"
    assert sorted(space.parameters()) == ["act", "depth", "kernel_size", "width"], (
        f"got {sorted(space.parameters())}")
    arch = space.sample(ScriptedTrial({"width": 128, "depth": 4}))
    proxy = space.proxy(arch, 10)
    assert isinstance(proxy, ConvMixerSpec), f"got {type(proxy)}"
    got = (proxy.width, proxy.depth, proxy.patch_size, proxy.img_size, proxy.num_classes)
    assert got == (32, 2, 2, 32, 10), f"expected (32, 2, 2, 32, 10), got {got}"
    doc["patch_size"] = [4, 128]
    with pytest.raises(SpaceError, match=r"^<python>: patch_size: values must be <= 64"):
        Space(doc, "<python>")


# --------------------------------------------------------------------------- size


def _enumerate(space: Space) -> set[str]:
    """Every configuration, by depth-first search over the define-by-run choices."""
    seen: set[str] = set()
    stack: list[list[int]] = [[]]
    while stack:
        prefix = stack.pop()
        counts: list[int] = []

        class Odometer:
            def suggest_categorical(self, name: str, choices: Any) -> Any:
                k = len(counts)
                counts.append(len(choices))
                return choices[prefix[k] if k < len(prefix) else 0]

        seen.add(arch_hash(space.sample(Odometer())))
        for k in range(len(prefix), len(counts)):
            for j in range(1, counts[k]):
                stack.append(prefix + [0] * (k - len(prefix)) + [j])
    return seen


@pytest.mark.parametrize("variant", ["small", "overrides", "per_stage"])
def test_size_counts_distinct_configurations(variant: str) -> None:
    doc = small_doc()
    if variant == "overrides":
        doc["act"] = ["gelu", "relu"]
        doc["stages"][0]["act"] = ["silu", "gelu"]
        doc["stages"][1]["mlp_ratio"] = [2, 4]
    elif variant == "per_stage":
        doc["depth"] = {"per_stage": [[1, 2], 1, [1, 2, 3], 1]}
    space = Space(doc, "<python>")
    configs = _enumerate(space)
    assert len(configs) == space.size(), (
        f"{variant}: size() says {space.size()}, enumeration finds {len(configs)}")


# --------------------------------------------------------------------------- errors


def _mut(path: str, value: Any) -> Callable[[dict], None]:
    def apply(doc: dict) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
        if value is _DELETE:
            del node[int(last) if isinstance(node, list) else last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return apply


_DELETE = object()

BAD = [  # (mutation, key path the message names, words it must contain)
    (_mut("stagez", 1), "stagez", "did you mean 'stages'"),
    (_mut("stages.2.mixer", "atention"), "stages[2].mixer", "did you mean 'attention'"),
    (_mut("stages.0.nrom", "ln"), "stages[0].nrom", "did you mean 'norm'"),
    (_mut("stages.1.mixer", _DELETE), "stages[1].mixer", "is required"),
    (_mut("act", "gleu"), "act", "did you mean 'gelu'"),
    (_mut("depth", _DELETE), "depth", "is required"),
    (_mut("depth.total", _DELETE), "depth.total", "is required"),
    (_mut("depth.total", [4, 4]), "depth.total", "lists a value twice"),
    (_mut("depth.total", []), "depth.total", "empty list"),
    (_mut("depth.total", 2), "depth.total", ">= 4"),
    (_mut("depth.total", 10**400), "depth.total", "magnitude"),
    (_mut("depth.per_stage", [1, 2]), "depth", "not both"),
    (_mut("depth.ratios", [223448]), "depth.ratios", "quote it: '1:2:4:8'"),
    (_mut("depth.ratios", "1:1:x:1"), "depth.ratios", "positive numbers joined by ':'"),
    (_mut("depth.ratios", "1:1:0:1"), "depth.ratios", "positive numbers"),
    (_mut("depth.ratios", "1:1:1"), "depth.ratios", "has 3 part(s) but the space has 4 stages"),
    (_mut("width.base", _DELETE), "width.base", "is required"),
    (_mut("width.base", "wide"), "width.base", "values must be integers"),
    (_mut("width.base", 16.5), "width.base", "values must be integers"),
    (_mut("width.lists", ["16:32:64:128"]), "width", "not both"),
    (_mut("width.multipliers", [1, 2, 4, 8]), "width.multipliers", "a list is a choice"),
    (_mut("width.multipliers", "1:1:4:8"), "width.multipliers", "equal widths"),
    (_mut("mixers.attention.head_dim", [8, 48]), "width.multipliers", "multiples of head_dim"),
    (_mut("width.divisor", [16, 32]), "width.divisor", "give one value, not a list"),
    (_mut("resolution", [64, 128]), "resolution", "give one value, not a list"),
    (_mut("resolution", True), "resolution", "values must be integers"),
    (_mut("resolution", 4), "resolution", ">= 8"),
    (_mut("mlp_ratio", float("nan")), "mlp_ratio", "finite"),
    (_mut("mlp_ratio", 0.1), "stages[0].mlp_ratio", "no hidden channels"),
    (_mut("mlp_ratio", {"a": 1}), "mlp_ratio", "not a mapping"),
    (_mut("layer_scale", "tiny"), "layer_scale", "numbers or null"),
    (_mut("mixers.sepconv.kernel_size", 4), "mixers.sepconv", "odd"),
    (_mut("mixers.sepconv.kernel_sise", 3), "mixers.sepconv.kernel_sise",
     "did you mean 'kernel_size'"),
    (_mut("mixers.identity", {"x": 1}), "mixers.identity.x", "takes no keys"),
    (_mut("mixers.atention", {}), "mixers.atention", "did you mean 'attention'"),
    (_mut("mixers.sepconv.expansion_ratio", 0.01), "mixers.sepconv", "< 1 channel"),
    (_mut("mixers.sepconv.expansion_ratio", 0.1), "stages[0].mixer", "width 8 in the proxy"),
    (_mut("family", "convmixr"), "family", "did you mean 'convmixer'"),
    (_mut("family", ["x"]), "family", "must be one of metaformer, convmixer"),
    (_mut("name", _DELETE), "name", "is required"),
    (_mut("description", ["x"]), "description", "must be a string"),
    (_mut("stages", []), "stages", "is required"),
    (_mut("stages.0", "sepconv"), "stages[0]", "must be a mapping"),
    (_mut("constraints", []), "constraints", "must be a mapping"),
    (_mut("constraints.max_macs", "lots"), "constraints.max_macs", "numbers or null"),
    (_mut("constraints.max_macs", [1e9, 2e9]), "constraints.max_macs", "not a list"),
    (_mut("constraints.conv_before_attention", "yes"), "constraints.conv_before_attention",
     "true/false"),
    (_mut("proxy.stem_stride", 3), "proxy.stem_stride", "must be one of 4, 2, 1"),
    (_mut("proxy.width_mult", 2), "proxy.width_mult", "<= 1"),
    (_mut("proxy.resolution", 7), "proxy.resolution", "must be >= 8"),
    (_mut("proxy.resolution", 600), "proxy.resolution", "<= 512"),
    (_mut("proxy.resolutoin", 2), "proxy.resolutoin", "did you mean 'resolution'"),
    (_mut("a\nb", 1), "a\\nb", "unknown key"),
]


@pytest.mark.parametrize("mutate, path, words", BAD, ids=[f"{b[1]}:{b[2][:20]}" for b in BAD])
def test_malformed_documents_name_file_key_and_rule(mutate: Callable, path: str,
                                                    words: str) -> None:
    doc = small_doc()
    mutate(doc)
    with pytest.raises(SpaceError) as e:
        Space(doc, source="bad.yaml")
    msg = str(e.value)
    assert len(msg.splitlines()) == 1, f"expected one line, got {msg!r}"
    assert msg.startswith(f"bad.yaml: {path}: "), f"expected 'bad.yaml: {path}: ...', got {msg!r}"
    assert words in msg, f"expected {words!r} in {msg!r}"


def test_null_sections_mean_defaults() -> None:
    doc = small_doc()
    doc.update(mixers=None, constraints=None, proxy=None)
    space = Space(doc, "<python>")
    assert space.proxy_spec == ProxySpec(), f"expected the default proxy, got {space.proxy_spec}"
    params = space.parameters()
    assert "stage1/sepconv/kernel_size" not in params, f"default kernel_size is fixed: {params}"


@pytest.mark.parametrize("text, words", [
    ("name: x\nstages: [\n", "invalid YAML"),
    ("", "a space must be a mapping; got NoneType"),
    ("- a\n- b\n", "a space must be a mapping; got list"),
    ("name: !!bool maybe\n", "invalid YAML: cannot build a value (KeyError"),
    ("name: 2001-02-30\n", "invalid YAML: cannot build a value (ValueError"),
    ("name: !!int abc\n", "invalid YAML: cannot build a value (ValueError"),
    ("name: !!python/object:os.system x\n", "invalid YAML: could not determine a constructor"),
    # PyYAML keeps the last of a repeated key: a second constraints block would drop the first
    ("name: x\nconstraints: {max_macs: 1.0e7}\nconstraints: {conv_before_attention: true}\n",
     "line 3: key 'constraints' given twice in one mapping"),
    ("name: x\nstages:\n  - {mixer: pooling, mixer: sepconv}\n",
     "line 3: key 'mixer' given twice in one mapping"),
    ("name: x\ndepth: {total: 4, ratios: [1:1:3:1]}\nwidth: {base: 16}\n"
     "stages: [{mixer: sepconv}, {mixer: sepconv}, {mixer: sepconv}, {mixer: sepconv}]\n",
     "depth.ratios: YAML reads the unquoted 1:1:3:1 as a base-60 number; quote it: '1:1:3:1'"),
])
def test_load_space_file_errors(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError) as e:
        load_space(path)
    msg = str(e.value)
    assert msg.startswith(str(path)) and words in msg and len(msg.splitlines()) == 1, (
        f"expected one line starting with {path} containing {words!r}; got {msg!r}")


def test_load_space_name_and_path_errors(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match=r"unknown space 'tinny'; known: .*did you mean 'tiny'"):
        load_space("tinny")
    with pytest.raises(SpaceError, match=r"no such space file"):
        load_space(tmp_path / "missing.yaml")
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    with pytest.raises(SpaceError, match=r"folder.yaml: is a directory, not a space file"):
        load_space(folder)
    with pytest.raises(SpaceError, match=r"^/dev/zero: is not a regular file \(a pipe, device"):
        load_space("/dev/zero")  # read, it would never end
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # reading it would block until a writer came
    with pytest.raises(SpaceError, match=r"pipe.yaml: is not a regular file"):
        load_space(fifo)
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"#" * (MAX_SPACE_BYTES + 1))
    with pytest.raises(SpaceError, match=r"huge.yaml: 1,048,577 bytes, more than a space "
                                         r"file's limit of 1,048,576 \(is it the right file\?\)$"):
        load_space(huge)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(SpaceError, match=r"not a UTF-8 text file"):
        load_space(binary)


def test_the_proxy_resolutions_a_space_allows_are_the_loaders() -> None:
    # a space with proxy.resolution 1 or 600 loaded, and the search it started refused it
    # naming neither the file nor the key
    from proxies.datasets import MAX_RESOLUTION, MIN_RESOLUTION
    from search_spaces._space import PROXY_RESOLUTIONS

    assert PROXY_RESOLUTIONS == (MIN_RESOLUTION, MAX_RESOLUTION)
