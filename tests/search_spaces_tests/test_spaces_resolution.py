"""What the proxy can tell apart (``search_spaces._resolution``): choices of a space whose
architectures reduce to one trained proxy, found on the shipped spaces and on variants of them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nas.models import arch_hash
from search_spaces import Space, load_space
from search_spaces._sampling import every_choice

ROOT = Path(__file__).resolve().parents[2]


def _doc(name: str) -> dict:
    return yaml.safe_load((ROOT / "search_spaces" / f"{name}.yaml").read_text())


def _brute_force(space: Space) -> tuple[int, int, int]:
    """(architectures, proxies, architectures sharing a proxy), every configuration built."""
    by_proxy: dict[str, set[str]] = {}
    for arch, _ in every_choice(space.sample):
        by_proxy.setdefault(arch_hash(space.proxy(arch, 10)), set()).add(arch_hash(arch))
    return (sum(map(len, by_proxy.values())), len(by_proxy),
            sum(len(v) for v in by_proxy.values() if len(v) > 1))


def test_tiny_trains_one_proxy_for_both_of_its_depths() -> None:
    """tiny's total depths 4 and 6 both become one block per stage at depth x 0.5: every one of
    its 72 architectures has a twin, and depth/total is the one choice behind it."""
    space = load_space("tiny")
    res = space.proxy_resolution()
    assert res.exact and res.examined == space.size() == 72
    assert (res.architectures, res.proxies, res.shared) == _brute_force(space) == (72, 36, 72)
    (pair,) = res.pairs
    assert (pair.param, pair.a, pair.b, pair.always) == ("depth/total", 4, 6, True)
    assert res.twinned == res.probed and res.worth_a_note
    assert "depth_mult" in res.advice()
    assert res.summary().startswith("72 of the space's 72 distinct architectures share their "
                                    "proxy with another (36 distinct proxies)")


def test_a_proxy_at_full_depth_tells_tinys_depths_apart() -> None:
    """The advice holds: with proxy.depth_mult 1 the two depths train different proxies, and
    nothing is reported."""
    doc = _doc("tiny")
    doc["proxy"]["depth_mult"] = 1.0
    res = Space(doc).proxy_resolution()
    assert res.resolves_all and not res.pairs and res.shared == 0 and not res.worth_a_note
    assert _brute_force(Space(doc))[2] == 0
    assert res.summary() == ("the proxy trains a different model for every one of the 72 "
                             "distinct architectures of the space")


def test_convmixer_patch_sizes_differ_in_cost_only() -> None:
    """The proxy trains every ConvMixer at its own patch size: 7 and 14 are one proxy."""
    res = load_space("convmixer").proxy_resolution()
    assert [(p.param, p.a, p.b, p.always) for p in res.pairs] == [("patch_size", 7, 14, True)]
    assert res.shared == res.architectures == 2 * res.proxies
    assert "proxy.patch_size" in res.advice() and "depth_mult" not in res.advice()


def test_a_width_choice_lost_in_rounding_is_found() -> None:
    """ufo head_dim 16 and 32 both become 8 at width x 0.25 (multiples of 8): one proxy."""
    doc = _doc("linear_attention")
    doc["mixers"]["ufo"] = {"head_dim": [16, 32]}
    doc["depth"] = {"total": 12, "ratios": "1:1:3:1"}  # leave the width choice on its own
    res = Space(doc).proxy_resolution()
    pairs = {(p.param, p.a, p.b): p.always for p in res.pairs}
    ufo = {k: v for k, v in pairs.items() if k[0].endswith("ufo/head_dim")}
    assert ufo and all(a == 16 and b == 32 and always for (_, a, b), always in ufo.items()), pairs
    assert "width_mult" in res.advice()


def test_sampled_spaces_report_the_share_with_a_twin_one_choice_away() -> None:
    """A space too large to enumerate is judged on seeded draws; the same seed gives the same
    answer, and each reported pair was seen to keep the proxy when only it changed."""
    space = load_space("hybrid_conv_attn")
    a = space.proxy_resolution(draws=300, pair_draws=30, seed=3)
    b = space.proxy_resolution(draws=300, pair_draws=30, seed=3)
    assert a == b and not a.exact and a.examined == 300 and a.probed == 30
    assert 0 < a.twinned <= a.probed and a.pairs
    assert all(0 < p.same <= p.tried for p in a.pairs)
    assert {p.param.split("/")[0] for p in a.pairs} == {"depth"}, a.pairs
    assert f"{a.twinned} of 30 random configurations have a twin one choice away" in a.summary()


def test_spaces_show_prints_the_twins_and_the_advice() -> None:
    r = subprocess.run([sys.executable, "-m", "nas", "spaces", "show", "tiny", "--probe", "50"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[-3].startswith("  proxy twins: 72 of the space's 72 distinct architectures")
    assert lines[-2] == "    choices the proxy trains as one model: depth/total 4 and 6 (always)"
    assert "a larger proxy.depth_mult would tell them apart" in lines[-1]


@pytest.mark.parametrize("stage4", [["attention", "pooling"], ["pooling", "attention"]])
def test_pairs_of_an_enumerated_space_are_judged_on_a_fair_sample(stage4) -> None:
    """Two width lists that differ only at stage 4 (288, 336) share a proxy only where stage 4
    is attention (head_dim 48 -> 16, so widths are multiples of 16: both 80), in half the
    configurations, whichever order the mixers are listed in. A stride through the
    enumeration's depth-first order saw the pair in every probe or in none."""
    doc = {"name": "stride", "description": "d", "family": "metaformer", "resolution": 64,
           "num_classes": 10, "stem": "v2", "head": "linear",
           "depth": {"per_stage": [[1, 2, 3, 4, 5], [1, 2, 3, 4, 5], [1, 2, 3, 4], 1]},
           "width": {"lists": ["48:96:192:288", "48:96:192:336"]},
           "norm": "ln_nobias", "act": "starrelu",
           "stages": [{"mixer": "pooling"}] * 3 + [{"mixer": stage4}],
           "mixers": {"attention": {"head_dim": 48}},
           "proxy": {"width_mult": 0.25, "depth_mult": 1.0, "resolution": 32, "stem_stride": 2}}
    space = Space(doc)
    res = space.proxy_resolution()
    assert (res.architectures, res.proxies, res.shared) == _brute_force(space) == (400, 300, 200)
    (pair,) = res.pairs
    assert pair.param == "width/lists" and not pair.always
    assert 0.35 < pair.same / pair.tried < 0.65, pair  # the truth: 200 of 400


def test_always_needs_more_than_one_sighting() -> None:
    from search_spaces._resolution import ChoicePair

    assert not ChoicePair("depth/total", 10, 20, 1, 1).always
    assert ChoicePair("depth/total", 4, 6, 3, 3).always
    assert ChoicePair("depth/total", 10, 20, 1, 1).describe() == \
        "depth/total 10 and 20 (in 1 of 1 configurations tried)"
