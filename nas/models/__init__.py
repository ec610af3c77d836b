"""The model library (a leaf): frozen specs, mixers and layers, the model builder, costs, presets.

Anyone can import it without Ray, Optuna or a database::

    from nas.models import build_model, analytic_cost, get_preset
    spec = get_preset("caformer_s18")
    model, cost = build_model(spec), analytic_cost(spec)

Importing it registers the presets timm lacks with timm (``timm.create_model("randformer_s12",
num_classes=10)``), and every export under ``$NAS_EXPORT_PATH`` (folders of ``python -m nas
export --out`` results, ``os.pathsep``-separated); :func:`register_timm` registers any
architecture under a new name.
"""

from __future__ import annotations

from nas.models._timm import register_exports, register_timm, timm_names
from nas.models.arch import (
    ArchSpec,
    ConvMixerSpec,
    MetaFormerSpec,
    StageSpec,
    arch_hash,
    canonical_json,
    describe,
    from_dict,
    to_dict,
)
from nas.models.cost import Cost, analytic_cost, measure_latency, traced_cost
from nas.models.mixers import MIXERS, MixerDef
from nas.models.model import build_model, runtime_config, validate, with_overrides
from nas.models.presets import get_preset, list_presets, register_preset

__all__ = [
    "MIXERS",
    "ArchSpec",
    "ConvMixerSpec",
    "Cost",
    "MetaFormerSpec",
    "MixerDef",
    "StageSpec",
    "analytic_cost",
    "arch_hash",
    "build_model",
    "canonical_json",
    "describe",
    "from_dict",
    "get_preset",
    "list_presets",
    "measure_latency",
    "register_exports",
    "register_preset",
    "register_timm",
    "runtime_config",
    "to_dict",
    "timm_names",
    "traced_cost",
    "validate",
    "with_overrides",
]

register_exports()  # $NAS_EXPORT_PATH: earlier exports are timm names in any process
