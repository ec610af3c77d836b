"""Presets: registry API, and every preset's params/MACs against metaformer.md §4 ("V" columns).

Both cost paths are checked against the published table: the closed form (analytic_cost) and a
meta-device forward under FlopCounterMode (traced_cost), and they must agree exactly with each
other on params, MACs and activations.
"""

from __future__ import annotations

import functools

import pytest
import timm
import torch

from nas.errors import ConfigError
from nas.models.arch import ConvMixerSpec, MetaFormerSpec, arch_hash, from_dict, to_dict
from nas.models.cost import Cost, analytic_cost, traced_cost
from nas.models.model import build_model, validate
from nas.models.presets import PRESETS, TIMM_NAMES, get_preset, list_presets

# metaformer.md §4: preset -> (Params V in M, MACs V in G at 224), printed to 3 decimals.
GOLDEN: dict[str, tuple[str, str]] = {
    # 4.1 PoolFormer v1
    "poolformer_s12": ("11.915", "1.812"),
    "poolformer_s24": ("21.389", "3.392"),
    "poolformer_s36": ("30.863", "4.972"),
    "poolformer_m36": ("56.173", "8.759"),
    "poolformer_m48": ("73.473", "11.533"),
    # 4.2 MetaFormer baselines with basic mixers
    "identityformer_s12": ("11.892", "1.812"),
    "identityformer_s24": ("21.341", "3.392"),
    "identityformer_s36": ("30.791", "4.972"),
    "identityformer_m36": ("56.077", "8.759"),
    "identityformer_m48": ("73.346", "11.533"),
    "randformer_s12": ("12.127", "1.888"),
    "randformer_s24": ("21.812", "3.545"),
    "randformer_s36": ("31.497", "5.201"),
    "randformer_m36": ("56.783", "9.035"),
    "randformer_m48": ("74.287", "11.902"),
    "poolformerv2_s12": ("11.892", "1.812"),
    "poolformerv2_s24": ("21.341", "3.392"),
    "poolformerv2_s36": ("30.791", "4.972"),
    "poolformerv2_m36": ("56.077", "8.759"),
    "poolformerv2_m48": ("73.346", "11.533"),
    # 4.3 ConvFormer / CAFormer
    "convformer_s18": ("26.774", "3.941"),
    "convformer_s36": ("40.012", "7.640"),
    "convformer_m36": ("57.052", "12.842"),
    "convformer_b36": ("99.883", "22.629"),
    "caformer_s18": ("26.342", "4.107"),
    "caformer_s36": ("39.297", "7.972"),
    "caformer_m36": ("56.205", "13.241"),
    "caformer_b36": ("98.754", "23.160"),
    # 4.4 ConvMixer
    "convmixer_1536_20": ("51.626", "51.099"),
    "convmixer_768_32": ("21.110", "20.677"),
    "convmixer_1024_20_ks9_p14": ("24.383", "5.949"),
}

# §4.3 MACs V at 384 (the 2N^2C attention term makes CAFormer grow faster than ConvFormer).
GOLDEN_MACS_384: dict[str, str] = {
    "convformer_s18": "11.576", "convformer_s36": "22.445", "convformer_m36": "37.734",
    "convformer_b36": "66.492", "caformer_s18": "13.366", "caformer_s36": "25.984",
    "caformer_m36": "41.977", "caformer_b36": "72.150",
}

# §2.2 / §4.2: RandFormer's frozen random matrices, in M.
GOLDEN_FROZEN: dict[str, str] = {
    "randformer_s12": "0.235", "randformer_s24": "0.471", "randformer_s36": "0.706",
    "randformer_m36": "0.706", "randformer_m48": "0.941",
}

# The exact totals the lead verified against timm for caformer_s18.
CAFORMER_S18_PARAMS = 26_341_656
CAFORMER_S18_MACS = 4_106_941_440

TEST_PRESETS = [n for n in list_presets() if n.startswith("test_")]


@functools.lru_cache(maxsize=None)
def _traced(name: str) -> Cost:
    """Each preset is traced once per session (up to ~1 s for the 36/48-block models)."""
    return traced_cost(get_preset(name))


def _fmt(cost: Cost) -> tuple[str, str]:
    return f"{cost.params / 1e6:.3f}", f"{cost.macs / 1e9:.3f}"


# --------------------------------------------------------------------------- registry API


def test_golden_table_covers_every_published_preset() -> None:
    published = set(list_presets()) - set(TEST_PRESETS)
    assert published == set(GOLDEN), (
        f"presets without a golden row: {sorted(published - set(GOLDEN))}; "
        f"golden rows without a preset: {sorted(set(GOLDEN) - published)}"
    )


def test_list_presets_patterns() -> None:
    assert list_presets() == sorted(list_presets()), "list_presets() must be sorted"
    assert list_presets("caformer_*") == [
        "caformer_b36", "caformer_m36", "caformer_s18", "caformer_s36"
    ], f"got {list_presets('caformer_*')}"
    assert list_presets("nothing_*") == [], f"got {list_presets('nothing_*')}"
    assert set(TEST_PRESETS) >= {"test_metaformer_tiny", "test_convmixer_tiny"}, (
        f"tiny test presets missing; have {TEST_PRESETS}"
    )


def test_timm_names_are_timm_models() -> None:
    expected = set(timm.list_models("poolformer*") + timm.list_models("convformer*")
                   + timm.list_models("caformer*") + timm.list_models("convmixer*"))
    assert set(TIMM_NAMES.values()) == expected, (
        f"expected {sorted(expected)}, got {sorted(TIMM_NAMES.values())}"
    )
    assert set(TIMM_NAMES) <= set(list_presets()), (
        f"TIMM_NAMES keys that are not presets: {sorted(set(TIMM_NAMES) - set(list_presets()))}"
    )
    for ours in list_presets("identityformer_*") + list_presets("randformer_*"):
        assert ours not in TIMM_NAMES, f"{ours} has no timm model but is in TIMM_NAMES"


@pytest.mark.parametrize("name", list_presets())
def test_preset_is_valid_and_round_trips(name: str) -> None:
    spec = get_preset(name)
    assert isinstance(spec, (MetaFormerSpec, ConvMixerSpec)), f"{name}: got {type(spec)}"
    assert validate(spec) is spec
    assert get_preset(name) == spec, f"{name}: presets must be deterministic"
    assert PRESETS.get(name)() == spec, f"{name}: registry function and get_preset differ"
    back = from_dict(to_dict(spec))
    assert back == spec and arch_hash(back) == arch_hash(spec), f"{name}: JSON round trip"


def test_get_preset_overrides() -> None:
    spec = get_preset("caformer_s18", num_classes=10, img_size=32, stem_stride=2)
    assert (spec.num_classes, spec.img_size, spec.stem_stride) == (10, 32, 2), (
        f"got {(spec.num_classes, spec.img_size, spec.stem_stride)}"
    )
    base = get_preset("caformer_s18")
    assert spec.stages == base.stages, "overrides must not touch the stages"
    assert (base.num_classes, base.img_size) == (1000, 224), "the registered preset changed"
    cm = get_preset("convmixer_768_32", num_classes=5)
    assert (cm.num_classes, cm.act) == (5, "relu"), f"got {(cm.num_classes, cm.act)}"


def test_get_preset_errors_name_the_allowed_values() -> None:
    with pytest.raises(ConfigError) as exc:
        get_preset("caformer_s19")
    msg = str(exc.value)
    assert "caformer_s18" in msg and "poolformer_s12" in msg, f"known names not listed: {msg}"
    with pytest.raises(ConfigError) as exc:
        get_preset("caformer_s18", num_class=10)
    msg = str(exc.value)
    assert "num_class" in msg and "num_classes" in msg and "img_size" in msg, msg
    with pytest.raises(ConfigError) as exc:
        get_preset("convmixer_768_32", stem="v1")
    assert "stem" in str(exc.value) and "patch_size" in str(exc.value), str(exc.value)
    with pytest.raises(ConfigError) as exc:
        get_preset("caformer_s18", stem_stride=3)
    assert "stem_stride" in str(exc.value) and "4, 2, 1" in str(exc.value), str(exc.value)
    with pytest.raises(ConfigError) as exc:
        get_preset("convmixer_768_32", img_size=4)
    assert "img_size 4" in str(exc.value) and "patch_size 7" in str(exc.value), str(exc.value)


# --------------------------------------------------------------------------- family settings


@pytest.mark.parametrize("name", list_presets("poolformer_*"))
def test_poolformer_v1_settings(name: str) -> None:
    spec = get_preset(name)
    expected_ls = 1e-5 if name in ("poolformer_s12", "poolformer_s24") else 1e-6
    got = {(s.mixer, s.norm, s.act, s.layer_scale, s.res_scale) for s in spec.stages}
    assert got == {("pooling", "gn1", "gelu", expected_ls, None)}, f"{name}: got {got}"
    assert (spec.stem, spec.mlp_bias, spec.head) == ("v1", True, "linear"), (
        f"{name}: got {(spec.stem, spec.mlp_bias, spec.head)}"
    )


V2_MIXERS: dict[str, tuple[str, ...]] = {
    "poolformerv2": ("pooling",) * 4,
    "identityformer": ("identity",) * 4,
    "randformer": ("identity", "identity", "random", "random"),
    "convformer": ("sepconv",) * 4,
    "caformer": ("sepconv", "sepconv", "attention", "attention"),
}


@pytest.mark.parametrize("name", [n for n in list_presets() if n.split("_")[0] in V2_MIXERS])
def test_v2_families_settings(name: str) -> None:
    spec = get_preset(name)
    family = name.split("_")[0]
    conv_family = family in ("convformer", "caformer")
    mixers = V2_MIXERS[family]
    assert spec.mixers == mixers, f"{name}: expected {mixers}, got {spec.mixers}"
    assert [s.res_scale for s in spec.stages] == [None, None, 1.0, 1.0], (
        f"{name}: got {[s.res_scale for s in spec.stages]}"
    )
    norm = "ln_nobias" if conv_family else "gn1_nobias"
    assert {(s.norm, s.act, s.layer_scale) for s in spec.stages} == {(norm, "starrelu", None)}
    assert (spec.stem, spec.mlp_bias, spec.head) == (
        "v2", False, "mlp" if conv_family else "linear"
    ), f"{name}: got {(spec.stem, spec.mlp_bias, spec.head)}"


# --------------------------------------------------------------------------- golden costs


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_analytic_cost_matches_published(name: str) -> None:
    got = _fmt(analytic_cost(get_preset(name)))
    assert got == GOLDEN[name], f"{name}: expected (M params, GMACs) {GOLDEN[name]}, got {got}"


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_traced_cost_matches_published(name: str) -> None:
    got = _fmt(_traced(name))
    assert got == GOLDEN[name], f"{name}: expected (M params, GMACs) {GOLDEN[name]}, got {got}"


@pytest.mark.parametrize("name", list_presets())
def test_analytic_equals_traced_exactly(name: str) -> None:
    analytic, traced = analytic_cost(get_preset(name)), _traced(name)
    assert analytic == traced, f"{name}: analytic {analytic} != traced {traced}"


@pytest.mark.parametrize("name", sorted(GOLDEN_MACS_384))
def test_macs_at_384_match_published(name: str) -> None:
    got = f"{analytic_cost(get_preset(name, img_size=384)).macs / 1e9:.3f}"
    assert got == GOLDEN_MACS_384[name], f"{name}@384: expected {GOLDEN_MACS_384[name]}, got {got}"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(GOLDEN_MACS_384))
def test_traced_macs_at_384(name: str) -> None:
    spec = get_preset(name, img_size=384)
    analytic, traced = analytic_cost(spec), traced_cost(spec)
    assert analytic == traced, f"{name}@384: analytic {analytic} != traced {traced}"


def test_caformer_s18_exact_totals() -> None:
    cost = analytic_cost(get_preset("caformer_s18"))
    assert (cost.params, cost.macs) == (CAFORMER_S18_PARAMS, CAFORMER_S18_MACS), (
        f"expected {(CAFORMER_S18_PARAMS, CAFORMER_S18_MACS)}, got {(cost.params, cost.macs)}"
    )


@pytest.mark.parametrize("name", sorted(GOLDEN_FROZEN))
def test_randformer_frozen_params(name: str) -> None:
    model = build_model(get_preset(name), device="meta")
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    got = f"{frozen / 1e6:.3f}"
    assert got == GOLDEN_FROZEN[name], f"{name}: expected {GOLDEN_FROZEN[name]}M, got {got}M"
    matrices = [m for m in model.modules() if hasattr(m, "random_matrix")]
    assert [m.random_matrix.shape[0] for m in matrices] == (
        [196] * get_preset(name).depths[2] + [49] * get_preset(name).depths[3]
    ), f"{name}: random matrices must be 196 x 196 in stage 3 and 49 x 49 in stage 4"


@pytest.mark.parametrize("name", TEST_PRESETS)
def test_tiny_presets_are_tiny(name: str) -> None:
    cost = analytic_cost(get_preset(name))
    assert cost.params < 200_000 and cost.macs < 20_000_000, f"{name}: {cost}"
    model = build_model(get_preset(name))
    x = torch.randn(2, 3, get_preset(name).img_size, get_preset(name).img_size)
    out = model(x)
    assert out.shape == (2, get_preset(name).num_classes), f"{name}: got {tuple(out.shape)}"
