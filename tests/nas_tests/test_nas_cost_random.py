"""analytic_cost == traced_cost exactly (params, MACs, acts) on a few hundred random architectures.

The generator is seeded (one test id per seed, so a failure names a reproducible config) and
registry-driven: every registered mixer, norm, activation, stem, stem stride and head can be
drawn. Widths are small (8..64) so tracing on the meta device stays cheap.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any

import pytest

from nas.models.arch import (
    HEADS,
    STEM_STRIDES,
    STEMS,
    ConvMixerSpec,
    MetaFormerSpec,
    StageSpec,
    stage_grids,
    to_dict,
)
from nas.models.cost import analytic_cost, traced_cost
from nas.models.layers import ACTS, NORMS
from nas.models.mixers import MIXERS
from nas.models.model import validate

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")

N_METAFORMER = 300
N_CONVMIXER = 60
MAX_WIDTH = 64
WIDTH_STEP = 8

# Candidate values per mixer setting (each setting is also left at its default 1 time in 4).
MIXER_SETTINGS: dict[str, dict[str, tuple[Any, ...]]] = {
    "sepconv": {"kernel_size": (1, 3, 5, 7), "expansion_ratio": (1, 1.5, 2, 3)},
    "pooling": {"pool_size": (1, 3, 5)},
    "attention": {"head_dim": (8, 16)},
    "ufo": {"head_dim": (8, 16)},
    "convmixer": {"kernel_size": (1, 2, 3, 5, 9), "act": tuple(ACTS.names())},
}
MLP_RATIOS = (1, 2, 3, 4, 2.5)
LAYER_SCALES = (None, 1e-5, 0.5)
RES_SCALES = (None, 1.0, 0.5)


def _mixer_args(rng: random.Random, mixer: str) -> dict[str, Any]:
    settings = MIXER_SETTINGS.get(mixer, {})
    return {k: rng.choice(v) for k, v in settings.items() if rng.random() < 0.75}


def random_metaformer(seed: int) -> MetaFormerSpec:
    rng = random.Random(seed)
    stages: list[StageSpec] = []
    prev_width = 0
    for _ in range(rng.randint(1, 4)):
        mixer = rng.choice(MIXERS.names())
        args = _mixer_args(rng, mixer)
        mdef = MIXERS.get(mixer)
        step = math.lcm(WIDTH_STEP, mdef.width_quantum(mdef.resolve(args)))
        widths = [w for w in range(step, MAX_WIDTH + 1, step) if w != prev_width]
        width = rng.choice(widths)
        stages.append(StageSpec(
            depth=rng.randint(1, 3), width=width, mixer=mixer, mixer_args=args,
            norm=rng.choice(NORMS.names()), act=rng.choice(ACTS.names()),
            mlp_ratio=rng.choice(MLP_RATIOS), layer_scale=rng.choice(LAYER_SCALES),
            res_scale=rng.choice(RES_SCALES),
        ))
        prev_width = width
    return MetaFormerSpec(
        stages=tuple(stages), stem=rng.choice(STEMS), stem_stride=rng.choice(STEM_STRIDES),
        mlp_bias=rng.random() < 0.5, head=rng.choice(HEADS), num_classes=rng.choice((1, 10, 1000)),
        in_chans=rng.choice((1, 3)), img_size=rng.randint(32, 96),
    )


def random_convmixer(seed: int) -> ConvMixerSpec:
    rng = random.Random(seed)
    return ConvMixerSpec(
        width=WIDTH_STEP * rng.randint(1, MAX_WIDTH // WIDTH_STEP), depth=rng.randint(1, 3),
        kernel_size=rng.randint(1, 9), patch_size=rng.randint(1, 8), act=rng.choice(ACTS.names()),
        num_classes=rng.choice((1, 10, 1000)), in_chans=rng.choice((1, 3)),
        img_size=rng.randint(32, 96),
    )


def _check_agree(spec: MetaFormerSpec | ConvMixerSpec) -> None:
    analytic, traced = analytic_cost(spec), traced_cost(spec)
    assert analytic == traced, (
        f"analytic {analytic} != traced {traced} for {to_dict(spec)}"
    )


# --------------------------------------------------------------------------- the generator itself


def test_generator_settings_cover_every_mixer_setting() -> None:
    """A newly registered mixer setting must get candidate values here (or it is never varied)."""
    missing = {m: sorted(set(MIXERS.get(m).defaults) - set(MIXER_SETTINGS.get(m, {})))
               for m in MIXERS.names()}
    missing = {m: s for m, s in missing.items() if s}
    assert not missing, f"expected candidates for every mixer setting; missing {missing}"


def test_generator_covers_every_registered_choice() -> None:
    specs = [random_metaformer(s) for s in range(N_METAFORMER)]
    seen: dict[str, Counter] = {
        "mixer": Counter(st.mixer for s in specs for st in s.stages),
        "norm": Counter(st.norm for s in specs for st in s.stages),
        "act": Counter(st.act for s in specs for st in s.stages),
        "stem": Counter(s.stem for s in specs),
        "stem_stride": Counter(s.stem_stride for s in specs),
        "head": Counter(s.head for s in specs),
        "stages": Counter(len(s.stages) for s in specs),
    }
    expected = {"mixer": MIXERS.names(), "norm": NORMS.names(), "act": ACTS.names(),
                "stem": STEMS, "stem_stride": STEM_STRIDES, "head": HEADS, "stages": (1, 2, 3, 4)}
    for key, values in expected.items():
        missing = set(values) - set(seen[key])
        assert not missing, f"{key}: expected all of {list(values)}, never drew {missing}"


@pytest.mark.parametrize("seed", range(0, N_METAFORMER, 7))
def test_generated_specs_are_valid(seed: int) -> None:
    spec = random_metaformer(seed)
    validate(spec)
    widths = spec.widths
    assert all(a != b for a, b in zip(widths, widths[1:])), f"equal consecutive widths {widths}"
    assert stage_grids(spec)[-1][0] >= 1, f"empty last grid {stage_grids(spec)}"


# --------------------------------------------------------------------------- analytic == traced


@pytest.mark.parametrize("seed", range(N_METAFORMER))
def test_random_metaformer_analytic_equals_traced(seed: int) -> None:
    _check_agree(random_metaformer(seed))


@pytest.mark.parametrize("seed", range(N_CONVMIXER))
def test_random_convmixer_analytic_equals_traced(seed: int) -> None:
    _check_agree(random_convmixer(seed))
