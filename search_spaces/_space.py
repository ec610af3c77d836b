"""A search space: a validated YAML document that samples architectures three ways.

One :class:`Space` is the single source for (a) Optuna define-by-run sampling with stable names
(``stage3/mixer``, ``stage3/attention/head_dim``), (b) uniform random sampling for design-space
statistics, and (c) counting and describing. Every sample compiles to an ``ArchSpec``.

Rules (documented in the README): a scalar is fixed, a list is a choice. Stage depths from a total
``L`` and a ratio pattern ``a:b:c:d`` are ``max(1, floor(L * r_i / sum(r) + 0.5))``. Widths from a
base and multipliers are ``max(q, q * floor(base * m_i / q + 0.5))`` with ``q`` the divisor.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from nas.arch import (
    HEADS,
    STEM_STRIDES,
    STEMS,
    ArchSpec,
    ConvMixerSpec,
    MetaFormerSpec,
    StageSpec,
)
from nas.cost import analytic_cost
from nas.errors import ConfigError, SpaceError, did_you_mean
from nas.layers import ACTS, NORMS
from nas.mixers import MIXERS
from nas.model import validate

__all__ = ["Space", "ProxySpec", "RandomTrial", "parse_space"]

ATTENTION_LIKE = ("attention", "ufo")  # mixers whose width must be a multiple of head_dim
STAGE_KEYS = ("mixer", "norm", "act", "mlp_ratio", "layer_scale", "res_scale")
TOP_KEYS = {
    "metaformer": ("name", "description", "family", "resolution", "num_classes", "stem", "head",
                   "mlp_bias", "depth", "width", "norm", "act", "mlp_ratio", "layer_scale",
                   "res_scale", "stages", "mixers", "constraints", "proxy"),
    "convmixer": ("name", "description", "family", "resolution", "num_classes", "width",
                  "depth", "kernel_size", "patch_size", "act", "constraints", "proxy"),
}
CONSTRAINT_KEYS = ("conv_before_attention", "nondecreasing_widths", "max_macs", "max_params")
FLOAT_SETTINGS = ("expansion_ratio",)  # mixer settings that may be fractional
PROXY_KEYS = ("width_mult", "depth_mult", "resolution", "stem_stride", "patch_size")


class TrialLike(Protocol):
    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


class RandomTrial:
    """Uniform choice per parameter (pycls-style populations); records what it drew."""

    def __init__(self, seed: int | random.Random | None = None) -> None:
        self.rng = seed if isinstance(seed, random.Random) else random.Random(seed)
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        self.params[name] = self.rng.choice(list(choices))
        return self.params[name]


@dataclass(frozen=True)
class ProxySpec:
    """How a full model is reduced to the proxy that is trained (recorded with every trial)."""

    width_mult: float = 0.25  # proxy width = width x this, rounded (8, or the head_dim)
    depth_mult: float = 0.5  # proxy depth = max(1, round(depth x this))
    resolution: int = 32  # proxy input side in pixels
    stem_stride: int = 2  # MetaFormer proxy stem stride (4, 2 or 1)
    patch_size: int = 2  # ConvMixer proxy patch size


# --------------------------------------------------------------------------- parsing helpers


class _Doc:
    """Error helper that knows the file and the key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> SpaceError:
        return SpaceError(f"{self.source}: {path}: {message}")

    def keys(self, path: str, node: Any, allowed: Sequence[str]) -> Mapping[str, Any]:
        if not isinstance(node, Mapping):
            raise self.fail(path, f"must be a mapping with keys {', '.join(allowed)}; "
                                  f"got {type(node).__name__}")
        for key in node:
            if key not in allowed:
                raise self.fail(f"{path}.{key}" if path else str(key),
                                f"unknown key; allowed: {', '.join(allowed)}"
                                f"{did_you_mean(key, allowed)}")
        return node

    def choices(self, path: str, node: Any, kind: type | tuple[type, ...],
                allowed: Sequence[Any] | None = None, nullable: bool = False,
                low: float | None = None) -> tuple[Any, ...]:
        """A scalar (fixed) or a non-empty list of scalars (a choice), each checked."""
        values = tuple(node) if isinstance(node, list) else (node,)
        if not values:
            raise self.fail(path, "an empty list offers no choice; give at least one value")
        for v in values:
            if v is None and nullable:
                continue
            bad_type = not isinstance(v, kind) or (isinstance(v, bool) and bool not in _tup(kind))
            if bad_type:
                names = "/".join(k.__name__ for k in _tup(kind)) + (" or null" if nullable else "")
                raise self.fail(path, f"values must be {names}; got {v!r}")
            if allowed is not None and v not in allowed:
                raise self.fail(path, f"must be one of {', '.join(map(str, allowed))}; "
                                      f"got {v!r}{did_you_mean(v, allowed)}")
            if low is not None and v < low:
                raise self.fail(path, f"values must be >= {low}; got {v!r}")
        if len(set(map(_key, values))) != len(values):
            raise self.fail(path, f"lists a value twice: {list(values)}")
        return values


def _tup(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _key(v: Any) -> str:
    return json.dumps(v, sort_keys=True)


def _ratio(doc: _Doc, path: str, text: Any, n: int | None) -> tuple[float, ...]:
    parts = str(text).split(":") if isinstance(text, (str, int, float)) else []
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        vals = ()
    if not vals or any(not math.isfinite(v) or v <= 0 for v in vals):
        raise doc.fail(path, f"must be positive numbers joined by ':' such as '1:1:3:1'; got {text!r}")
    if n is not None and len(vals) != n:
        raise doc.fail(path, f"'{text}' has {len(vals)} parts but the space has {n} stages")
    return vals


def split_depth(total: int, ratio: Sequence[float]) -> tuple[int, ...]:
    """Stage depths: max(1, floor(L * r_i / sum(r) + 0.5))."""
    s = sum(ratio)
    return tuple(max(1, math.floor(total * r / s + 0.5)) for r in ratio)


def round_width(x: float, q: int) -> int:
    """max(q, q * floor(x / q + 0.5))."""
    return max(q, q * math.floor(x / q + 0.5))


# --------------------------------------------------------------------------- the space


class Space:
    """A parsed, validated search space (see the module docstring for the rules)."""

    def __init__(self, doc: Mapping[str, Any], source: str = "<space>") -> None:
        self.source = source
        self.doc = doc
        d = _Doc(source)
        if not isinstance(doc, Mapping):
            raise d.fail("(top)", f"a space must be a mapping; got {type(doc).__name__}")
        family = doc.get("family", "metaformer")
        if family not in TOP_KEYS:
            raise d.fail("family", f"must be one of metaformer, convmixer; got {family!r}"
                                   f"{did_you_mean(family, TOP_KEYS)}")
        self.family: str = family
        d.keys("", doc, TOP_KEYS[family])
        name = doc.get("name")
        if not isinstance(name, str) or not name:
            raise d.fail("name", "is required: a non-empty string")
        self.name: str = name
        self.description: str = str(doc.get("description", "")).strip()
        self.resolution: int = d.choices("resolution", doc.get("resolution", 224), int, low=8)[0]
        self.num_classes: int = d.choices("num_classes", doc.get("num_classes", 1000), int, low=1)[0]
        self._d = d
        self.choices: dict[str, tuple[Any, ...]] = {}  # every choice point, fixed ones included
        if family == "metaformer":
            self._parse_metaformer(doc)
        else:
            self._parse_convmixer(doc)
        self._parse_constraints(doc.get("constraints", {}))
        self.proxy_spec = self._parse_proxy(doc.get("proxy", {}))
        self.hash = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self._check_probe()

    # ---------------------------------------------------------------- metaformer parsing

    def _parse_metaformer(self, doc: Mapping[str, Any]) -> None:
        d = self._d
        stages = doc.get("stages")
        if not isinstance(stages, list) or not stages:
            raise d.fail("stages", "is required: a list with one entry per stage (each with a mixer)")
        self.n_stages = n = len(stages)
        self.stem = d.choices("stem", doc.get("stem", "v2"), str, STEMS)
        self.head = d.choices("head", doc.get("head", "mlp"), str, HEADS)
        self.mlp_bias = d.choices("mlp_bias", doc.get("mlp_bias", False), bool)
        glob = {
            "norm": d.choices("norm", doc.get("norm", "ln_nobias"), str, NORMS.names()),
            "act": d.choices("act", doc.get("act", "starrelu"), str, ACTS.names()),
            "mlp_ratio": d.choices("mlp_ratio", doc.get("mlp_ratio", 4), (int, float), low=0.0625),
            "layer_scale": d.choices("layer_scale", doc.get("layer_scale"), (int, float), nullable=True),
            "res_scale": d.choices("res_scale", doc.get("res_scale"), (int, float), nullable=True),
        }
        self.stages: list[dict[str, tuple[Any, ...]]] = []
        for i, st in enumerate(stages):
            p = f"stages[{i}]"
            d.keys(p, st, STAGE_KEYS)
            if "mixer" not in st:
                raise d.fail(p, f"needs a mixer (one of {', '.join(MIXERS.names())})")
            entry = {"mixer": d.choices(f"{p}.mixer", st["mixer"], str, MIXERS.names())}
            for key, default in glob.items():
                if key in st:
                    kind = str if key in ("norm", "act") else (int, float)
                    allowed = {"norm": NORMS.names(), "act": ACTS.names()}.get(key)
                    entry[key] = d.choices(f"{p}.{key}", st[key], kind, allowed,
                                           nullable=key.endswith("scale"),
                                           low=0.0625 if key == "mlp_ratio" else None)
                    entry[f"{key}@stage"] = (True,)
                else:
                    entry[key] = default
            self.stages.append(entry)
        self.mixer_settings = self._parse_mixers(doc.get("mixers", {}))
        self._parse_depth(doc.get("depth"), n)
        self._parse_width(doc.get("width"), n)

    def _parse_mixers(self, node: Any) -> dict[str, dict[str, tuple[Any, ...]]]:
        d = self._d
        used = sorted({m for st in self.stages for m in st["mixer"]})
        d.keys("mixers", node, MIXERS.names())
        out = {}
        for m in used:
            mdef = MIXERS.get(m)
            given = node.get(m, {}) or {}
            d.keys(f"mixers.{m}", given, list(mdef.defaults))
            out[m] = {}
            for key, default in mdef.defaults.items():
                kind = (int, float) if key in FLOAT_SETTINGS else type(default)
                allowed = ACTS.names() if key == "act" else None
                out[m][key] = d.choices(f"mixers.{m}.{key}", given.get(key, default), kind, allowed)
            for combo in itertools.product(*out[m].values()):
                args = dict(zip(out[m], combo))
                width = 64 * args.get("head_dim", 1)  # a width every setting can divide
                try:
                    mdef.check(width, (7, 7), **args)
                except ConfigError as e:
                    raise d.fail(f"mixers.{m}", str(e)) from None
        return out

    def _parse_depth(self, node: Any, n: int) -> None:
        d = self._d
        if node is None:
            raise d.fail("depth", "is required: {total: [...], ratios: [...]} or {per_stage: [...]}")
        if isinstance(node, Mapping) and "per_stage" in node:
            d.keys("depth", node, ("per_stage",))
            per = node["per_stage"]
            if not isinstance(per, list) or len(per) != n:
                raise d.fail("depth.per_stage", f"must list one entry per stage ({n})")
            self.depth_mode = "per_stage"
            self.depth_per_stage = [d.choices(f"depth.per_stage[{i}]", v, int, low=1)
                                    for i, v in enumerate(per)]
            return
        d.keys("depth", node, ("total", "ratios"))
        self.depth_mode = "ratios"
        self.depth_total = d.choices("depth.total", node.get("total"), int, low=n)
        ratios = d.choices("depth.ratios", node.get("ratios", ":".join(["1"] * n)), (str, int))
        self.depth_ratios = {str(r): _ratio(d, "depth.ratios", r, n) for r in ratios}

    def _parse_width(self, node: Any, n: int) -> None:
        d = self._d
        if node is None:
            raise d.fail("width", "is required: {base, multipliers, divisor} or {lists: [...]}")
        if isinstance(node, Mapping) and "lists" in node:
            d.keys("width", node, ("lists",))
            self.width_mode = "lists"
            lists = d.choices("width.lists", node["lists"], str)
            self.width_lists = {}
            for text in lists:
                vals = _ratio(d, "width.lists", text, n)
                if any(v != int(v) for v in vals):
                    raise d.fail("width.lists", f"widths must be integers; got '{text}'")
                self.width_lists[text] = tuple(int(v) for v in vals)
        else:
            d.keys("width", node, ("base", "multipliers", "divisor"))
            self.width_mode = "base"
            self.width_base = d.choices("width.base", node.get("base"), int, low=1)
            mults = d.choices("width.multipliers", node.get("multipliers", "1:2:4:8"), str)
            self.width_mults = {m: _ratio(d, "width.multipliers", m, n) for m in mults}
            self.width_divisor = d.choices("width.divisor", node.get("divisor", 8), int, low=1)[0]
        for widths, where in self._all_widths():
            for i in range(1, n):
                if widths[i] == widths[i - 1]:
                    raise d.fail(where, f"gives equal widths {list(widths)} at stages {i} and "
                                        f"{i + 1}; consecutive widths must differ")
            for i, st in enumerate(self.stages):
                for m in st["mixer"]:
                    if m in ATTENTION_LIKE:
                        for hd in self.mixer_settings[m]["head_dim"]:
                            if widths[i] % hd:
                                raise d.fail(where, f"gives width {widths[i]} at stage {i + 1}, "
                                             f"which can be '{m}' with head_dim {hd}: widths of "
                                             f"attention stages must be multiples of head_dim "
                                             f"(use a divisor that is a multiple of {hd})")

    def _all_widths(self):
        if self.width_mode == "lists":
            for text, w in self.width_lists.items():
                yield w, f"width.lists '{text}'"
        else:
            for b, (text, m) in itertools.product(self.width_base, self.width_mults.items()):
                yield (tuple(round_width(b * x, self.width_divisor) for x in m),
                       f"width base {b} x multipliers '{text}'")

    # ---------------------------------------------------------------- convmixer parsing

    def _parse_convmixer(self, doc: Mapping[str, Any]) -> None:
        d = self._d
        for key in ("width", "depth"):
            if key not in doc:
                raise d.fail(key, "is required: an integer or a list of integers")
        self.cm = {
            "width": d.choices("width", doc["width"], int, low=1),
            "depth": d.choices("depth", doc["depth"], int, low=1),
            "kernel_size": d.choices("kernel_size", doc.get("kernel_size", 9), int, low=1),
            "patch_size": d.choices("patch_size", doc.get("patch_size", 7), int, low=1),
            "act": d.choices("act", doc.get("act", "gelu"), str, ACTS.names()),
        }

    # ---------------------------------------------------------------- constraints, proxy

    def _parse_constraints(self, node: Any) -> None:
        d = self._d
        d.keys("constraints", node or {}, CONSTRAINT_KEYS)
        node = node or {}
        self.conv_before_attention = d.choices("constraints.conv_before_attention",
                                               node.get("conv_before_attention", False), bool)[0]
        self.nondecreasing_widths = d.choices("constraints.nondecreasing_widths",
                                              node.get("nondecreasing_widths", True), bool)[0]
        self.max_macs = d.choices("constraints.max_macs", node.get("max_macs"), (int, float),
                                  nullable=True, low=1)[0]
        self.max_params = d.choices("constraints.max_params", node.get("max_params"),
                                    (int, float), nullable=True, low=1)[0]

    def _parse_proxy(self, node: Any) -> ProxySpec:
        d = self._d
        d.keys("proxy", node or {}, PROXY_KEYS)
        node = node or {}
        base = ProxySpec()
        vals = {}
        for key in PROXY_KEYS:
            default = getattr(base, key)
            kind = float if isinstance(default, float) else int
            v = d.choices(f"proxy.{key}", node.get(key, default),
                          (int, float) if kind is float else int,
                          STEM_STRIDES if key == "stem_stride" else None, low=1e-3)[0]
            vals[key] = kind(v)
        if vals["width_mult"] > 1 or vals["depth_mult"] > 1:
            raise d.fail("proxy", "width_mult and depth_mult must be in (0, 1]")
        return ProxySpec(**vals)

    def _check_probe(self) -> None:
        """Build the first choice of everything once, so a broken space fails at load."""
        trial = _FirstChoice()
        try:
            validate(self.sample(trial))
        except ConfigError as e:
            raise self._d.fail("(first choices)", str(e)) from None

    # ---------------------------------------------------------------- sampling

    def sample(self, trial: TrialLike) -> ArchSpec:
        """Define-by-run sampling; fixed values are not suggested (they are not parameters)."""
        pick = _Picker(trial)
        if self.family == "convmixer":
            c = {k: pick(k, v) for k, v in self.cm.items()}
            return ConvMixerSpec(num_classes=self.num_classes, img_size=self.resolution, **c)
        n = self.n_stages
        if self.depth_mode == "ratios":
            total = pick("depth/total", self.depth_total)
            ratio = self.depth_ratios[pick("depth/ratios", tuple(self.depth_ratios))]
            depths = split_depth(total, ratio)
        else:
            depths = tuple(pick(f"stage{i + 1}/depth", c) for i, c in enumerate(self.depth_per_stage))
        if self.width_mode == "lists":
            widths = self.width_lists[pick("width/lists", tuple(self.width_lists))]
        else:
            base = pick("width/base", self.width_base)
            mult = self.width_mults[pick("width/multipliers", tuple(self.width_mults))]
            widths = tuple(round_width(base * m, self.width_divisor) for m in mult)
        shared = {}
        for key in ("norm", "act", "mlp_ratio", "layer_scale", "res_scale"):
            if not any(f"{key}@stage" in st for st in self.stages):
                shared[key] = pick(key, self.stages[0][key])
        stages = []
        for i, st in enumerate(self.stages):
            s = f"stage{i + 1}"
            mixer = pick(f"{s}/mixer", st["mixer"])
            args = {k: pick(f"{s}/{mixer}/{k}", v) for k, v in self.mixer_settings[mixer].items()}
            vals = {k: shared[k] if k in shared else pick(f"{s}/{k}", st[k])
                    for k in ("norm", "act", "mlp_ratio", "layer_scale", "res_scale")}
            stages.append(StageSpec(depth=depths[i], width=widths[i], mixer=mixer,
                                    mixer_args=args, **vals))
        assert len(stages) == n
        return MetaFormerSpec(
            stages=tuple(stages), stem=pick("stem", self.stem), head=pick("head", self.head),
            mlp_bias=pick("mlp_bias", self.mlp_bias), num_classes=self.num_classes,
            img_size=self.resolution,
        )

    def sample_random(self, seed: int | random.Random | None = None, *, feasible: bool = True,
                      max_tries: int = 1000) -> tuple[ArchSpec, dict[str, Any]]:
        """Uniform random sample (rejection sampling on the constraints when ``feasible``)."""
        rng = seed if isinstance(seed, random.Random) else random.Random(seed)
        for _ in range(max_tries):
            trial = RandomTrial(rng)
            arch = self.sample(trial)
            if not feasible or not self.violations(arch):
                return arch, trial.params
        raise SpaceError(f"{self.source}: no feasible configuration in {max_tries} random draws; "
                         "loosen the constraints")

    # ---------------------------------------------------------------- constraints

    def violations(self, arch: ArchSpec) -> list[str]:
        """Constraint violations (empty when feasible), checked with the analytic cost model."""
        out = []
        if isinstance(arch, MetaFormerSpec):
            kinds = [MIXERS.get(s.mixer).kind for s in arch.stages]
            if self.conv_before_attention:
                seen_global = False
                for i, k in enumerate(kinds):
                    if k == "global":
                        seen_global = True
                    elif k == "local" and seen_global:
                        out.append(f"conv_before_attention: stage {i + 1} is '{arch.stages[i].mixer}'"
                                   " after an attention-type stage")
                        break
            if self.nondecreasing_widths and any(b < a for a, b in zip(arch.widths, arch.widths[1:])):
                out.append(f"nondecreasing_widths: widths {list(arch.widths)} decrease")
        if self.max_macs is not None or self.max_params is not None:
            cost = analytic_cost(arch)
            if self.max_macs is not None and cost.macs > self.max_macs:
                out.append(f"max_macs: {cost.macs / 1e9:.3f} GMACs > {self.max_macs / 1e9:.3f}")
            if self.max_params is not None and cost.params > self.max_params:
                out.append(f"max_params: {cost.params / 1e6:.3f} M > {self.max_params / 1e6:.3f}")
        return out

    # ---------------------------------------------------------------- proxy

    def proxy(self, arch: ArchSpec, num_classes: int) -> ArchSpec:
        """The reduced model that is trained: narrower, shallower, smaller input, adapted stem."""
        p = self.proxy_spec
        if isinstance(arch, ConvMixerSpec):
            return replace(arch, width=round_width(arch.width * p.width_mult, 8),
                           depth=max(1, math.floor(arch.depth * p.depth_mult + 0.5)),
                           patch_size=p.patch_size, img_size=p.resolution, num_classes=num_classes)
        return proxy_metaformer(arch, p, num_classes)

    # ---------------------------------------------------------------- describing

    def parameters(self) -> dict[str, tuple[Any, ...]]:
        """Every Optuna parameter name with its choices (conditional ones included)."""
        rec = _Recorder()
        self.sample(rec)
        if self.family == "metaformer":
            for i, st in enumerate(self.stages):
                for m in st["mixer"]:
                    for k, v in self.mixer_settings[m].items():
                        if len(v) > 1:
                            rec.seen[f"stage{i + 1}/{m}/{k}"] = v
        return dict(sorted(rec.seen.items()))

    def size(self) -> int:
        """Number of distinct configurations before constraints."""
        if self.family == "convmixer":
            return math.prod(len(v) for v in self.cm.values())
        n = (len(self.depth_total) * len(self.depth_ratios) if self.depth_mode == "ratios"
             else math.prod(len(c) for c in self.depth_per_stage))
        n *= (len(self.width_lists) if self.width_mode == "lists"
              else len(self.width_base) * len(self.width_mults))
        n *= len(self.stem) * len(self.head) * len(self.mlp_bias)
        for st in self.stages:
            n *= sum(math.prod(len(v) for v in self.mixer_settings[m].values()) for m in st["mixer"])
        for key in ("norm", "act", "mlp_ratio", "layer_scale", "res_scale"):
            if any(f"{key}@stage" in st for st in self.stages):
                n *= math.prod(len(st[key]) for st in self.stages)
            else:
                n *= len(self.stages[0][key])
        return n


def proxy_metaformer(arch: MetaFormerSpec, p: ProxySpec, num_classes: int) -> MetaFormerSpec:
    """Scale widths (multiples of 8, of the scaled head_dim in attention stages, strictly
    increasing), depths and head_dim; keep mixers, norms and activations."""
    stages, prev = [], 0
    for s in arch.stages:
        args = s.args
        q = 8
        if "head_dim" in args and s.mixer in ATTENTION_LIKE:
            args["head_dim"] = max(8, round_width(args["head_dim"] * p.width_mult, 8))
            q = math.lcm(8, args["head_dim"])
        width = round_width(s.width * p.width_mult, q)
        if width <= prev:
            width = (prev // q + 1) * q
        depth = max(1, math.floor(s.depth * p.depth_mult + 0.5))
        stages.append(replace(s, width=width, depth=depth, mixer_args=tuple(args.items())))
        prev = width
    return replace(arch, stages=tuple(stages), img_size=p.resolution, stem_stride=p.stem_stride,
                   num_classes=num_classes)


class _Picker:
    def __init__(self, trial: TrialLike) -> None:
        self.trial = trial

    def __call__(self, name: str, choices: tuple[Any, ...]) -> Any:
        return choices[0] if len(choices) == 1 else self.trial.suggest_categorical(name, choices)


class _FirstChoice:
    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return choices[0]


class _Recorder:
    """Walks every branch once per call: records names and choices (conditional included)."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[Any, ...]] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        self.seen[name] = tuple(choices)
        return choices[0]


def parse_space(doc: Any, source: str = "<space>") -> Space:
    return Space(doc, source)
