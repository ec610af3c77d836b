"""The portable model code (``nas/models/portable.py``, what an export ships as ``model.py``)
and the project's builder are one model: same registry entries, same modules, same outputs."""

from __future__ import annotations

import pytest
import torch

from nas.models import build_model, from_dict, get_preset, list_presets, portable, to_dict
from nas.models.layers import ACTS, NORMS
from nas.models.mixers import MIXERS, RandomMixing
from nas.models.model import runtime_config, with_overrides
from nas_errors import ConfigError

TINY = ["test_metaformer_tiny", "test_randformer_tiny", "test_convmixer_tiny"]
# the smallest preset of each family: every mixer, stem, head and norm the presets use
FAMILIES = ["poolformer_s12", "poolformerv2_s12", "identityformer_s12", "randformer_s12",
            "convformer_s18", "caformer_s18", "convmixer_768_32", *TINY]


def test_every_portable_entry_is_registered_with_the_same_code() -> None:
    for name, (layout, builder) in portable.MIXERS.items():
        mixer = MIXERS.get(name)
        assert mixer.layout == layout, f"{name}: registry layout {mixer.layout}, portable {layout}"
        if name == "random":  # the project's subclass only raises ConfigError instead
            built = mixer.build(8, (2, 2))
            assert isinstance(built, RandomMixing) and isinstance(built, portable.RandomMixing)
        elif name != "convmixer":  # convmixer resolves its act through the registry
            assert mixer.build is builder, f"{name}: registry builder is not portable's"
    for name, (nchw, tokens) in portable.NORMS.items():
        assert (NORMS.get(name).nchw, NORMS.get(name).tokens) == (nchw, tokens), name
    for name, factory in portable.ACTS.items():
        assert ACTS.get(name).factory is factory, name


def test_every_registered_entry_is_portable() -> None:
    """Shipped mixers, norms and activations can all be exported (tests register temporary
    ones, which are not: export refuses those by name)."""
    assert set(MIXERS.names()) == set(portable.MIXERS), MIXERS.names()
    assert set(NORMS.names()) == set(portable.NORMS), NORMS.names()
    assert set(ACTS.names()) == set(portable.ACTS), ACTS.names()


def test_families_cover_every_preset_family() -> None:
    families = {n.split("_")[0] for n in list_presets()}
    assert families == {n.split("_")[0] for n in FAMILIES}, sorted(families)


@pytest.mark.parametrize("name", FAMILIES)
def test_portable_build_has_the_projects_state_dict(name: str) -> None:
    spec = get_preset(name)
    with torch.device("meta"):
        ours = build_model(spec)
        theirs = portable.build(runtime_config(spec))
    a = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    b = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert list(a) == list(b), f"{name}: keys differ: {sorted(set(a) ^ set(b))[:8]}"
    assert a == b, f"{name}: shapes differ: {[k for k in a if a[k] != b[k]][:8]}"


@pytest.mark.parametrize("name", TINY)
def test_portable_build_computes_the_same_function(name: str) -> None:
    spec = get_preset(name)
    torch.manual_seed(0)
    ours = build_model(spec).eval()
    torch.manual_seed(0)
    theirs = portable.build(runtime_config(spec)).eval()
    for (k, v), w in zip(ours.state_dict().items(), theirs.state_dict().values()):
        assert torch.equal(v, w), f"{name}: same seed, different init of {k}"
    x = torch.randn(2, 3, spec.img_size, spec.img_size)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x)), f"{name}: outputs differ"


def test_build_model_takes_a_dict_and_overrides() -> None:
    spec = get_preset("test_randformer_tiny")
    model = build_model(to_dict(spec), num_classes=3, img_size=64).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)
    assert with_overrides(to_dict(spec)) == spec
    assert from_dict(to_dict(with_overrides(spec, img_size=64))).img_size == 64
    with pytest.raises(ConfigError, match="img_size must be an integer >= 1; got 0"):
        build_model(spec, img_size=0)
    with pytest.raises(ConfigError, match="expected an architecture"):
        build_model("caformer_s18")  # a name is not an architecture: get_preset(name) is


def test_portable_random_mixing_raises_value_error_on_another_grid() -> None:
    model = portable.build(runtime_config(get_preset("test_randformer_tiny"))).eval()
    with pytest.raises(ValueError, match="4x4 grid.*6x6 grid"):
        model(torch.randn(1, 3, 48, 48))
