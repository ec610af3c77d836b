"""A search space: a validated YAML document that samples architectures three ways.

One :class:`Space` is the single source for (a) Optuna define-by-run sampling with stable names
(``stage3/mixer``, ``stage3/attention/head_dim``), (b) uniform random sampling for design-space
statistics, and (c) counting and describing. Every sample compiles to an ``ArchSpec``.

Rules (documented in the README "Search-space format"): a scalar is fixed, a list is a choice.
Stage depths from a total ``L`` and a ratio pattern ``a:b:c:d`` are
``max(1, floor(L * r_i / sum(r) + 0.5))``. Widths from a base and multipliers are
``max(q, q * floor(base * m_i / q + 0.5))`` with ``q`` the divisor. A global ``norm``/``act``/
``mlp_ratio``/``layer_scale``/``res_scale`` is one shared parameter (``norm``); a stage's own value
replaces it there and is a parameter of that stage (``stage3/norm``). Numbers may be written as
strings (``8.0e9``, ``1e-5``: PyYAML reads these as strings). A malformed document always raises
:class:`~nas.errors.SpaceError` with the file, the key path and what is allowed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from collections import Counter
from collections.abc import Container, Iterator, Mapping, Sequence
from typing import Any

from nas.models import MIXERS, ArchSpec, ConvMixerSpec, MetaFormerSpec, StageSpec, validate
from nas.models.arch import HEADS, STEM_STRIDES, STEMS, arch_hash, grid_sides
from nas.models.layers import ACTS, NORMS
from nas.models.proxy import (
    ProxySpec,
    proxy_stage,
    proxy_widths,
    reduce_to_proxy,
    round_width,
)
from nas_errors import ConfigError, SpaceError, did_you_mean
from search_spaces._constraints import Constraints
from search_spaces._document import Doc, short
from search_spaces._sampling import (
    FirstChoice,
    NameRecorder,
    Picker,
    RandomTrial,
    SetTrial,
    TrialLike,
    every_choice,
)

__all__ = ["Space", "RandomTrial", "split_depth"]

STAGE_OPTS = ("norm", "act", "mlp_ratio", "layer_scale", "res_scale")  # global, or per stage
STAGE_KEYS = ("mixer", *STAGE_OPTS)
TOP_KEYS = {
    "metaformer": ("name", "description", "family", "resolution", "num_classes", "stem", "head",
                   "mlp_bias", "depth", "width", *STAGE_OPTS, "stages", "mixers", "constraints",
                   "proxy"),
    "convmixer": ("name", "description", "family", "resolution", "num_classes", "width",
                  "depth", "kernel_size", "patch_size", "act", "constraints", "proxy"),
}
CONSTRAINT_KEYS = ("conv_before_attention", "nondecreasing_widths", "max_macs", "max_params")
PROXY_KEYS = ("width_mult", "depth_mult", "resolution", "stem_stride", "patch_size")
#: the image sides the proxy's loaders serve (proxies.datasets.MIN_RESOLUTION, MAX_RESOLUTION;
#: a test checks they agree): a space is refused on load, not by the search it starts
PROXY_RESOLUTIONS = (8, 512)
PROBE_GRID = (7, 7)  # token grid at which mixer settings are checked while parsing
MAX_DEPTH = 1000  # blocks per stage (or ConvMixer layers)
LOCAL_SEARCH_STARTS = 20  # draws a local search for a feasible configuration starts from
MAX_WIDTH = 65536  # channels



def split_depth(total: int, ratio: Sequence[float]) -> tuple[int, ...]:
    """Stage depths: max(1, floor(L * r_i / sum(r) + 0.5))."""
    s = sum(ratio)
    return tuple(max(1, math.floor(total * r / s + 0.5)) for r in ratio)


# --------------------------------------------------------------------------- the space


def _digest(doc: Mapping[str, Any]) -> str:
    try:
        text = json.dumps(doc, sort_keys=True, default=str)
    except (TypeError, ValueError):  # non-string keys in a Python-built document
        text = repr(doc)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Space:
    """A parsed, validated search space, frozen once parsed (see the module docstring).

    Reading the document is in ``_document.py``, the trials it samples with in ``_sampling.py``,
    its constraints in ``_constraints.py``; proxy reduction is the model library's
    (``nas.models.proxy``).

    Args:
        doc: the document (what ``yaml.safe_load`` returns, or a dict written in Python).
        source: the file name (or ``"<python>"``) that error messages start with.

    Example:
        >>> space = Space({"name": "s", "depth": {"total": [4, 8]}, "width": {"base": 32},
        ...                "stages": [{"mixer": m} for m in ("sepconv",) * 3 + ("attention",)]},
        ...               source="<python>")
        >>> arch, params = space.sample_random(0)
    """

    def __init__(self, doc: Mapping[str, Any], source: str = "<space>") -> None:
        self.source = source
        self.doc = doc
        d = self._d = Doc(source)
        if not isinstance(doc, Mapping):
            raise d.fail("(top)", f"a space must be a mapping; got {type(doc).__name__} "
                                  f"{short(doc)}")
        family = doc.get("family", "metaformer")
        if not isinstance(family, str) or family not in TOP_KEYS:
            raise d.fail("family", f"must be one of {', '.join(TOP_KEYS)}; got {short(family)}"
                                   f"{did_you_mean(family, TOP_KEYS)}")
        self.family: str = family
        d.keys("", doc, TOP_KEYS[family])
        name = doc.get("name")
        if not isinstance(name, str) or not name.strip():
            raise d.fail("name", f"is required: a non-empty string; got {short(name)}")
        self.name: str = name
        description = doc.get("description")
        description = "" if description is None else description  # `description:` left empty
        if not isinstance(description, str):
            raise d.fail("description", f"must be a string; got {short(description)}")
        self.description: str = description.strip()
        self.resolution: int = d.scalar("resolution", doc.get("resolution", 224), "int", low=8,
                                        high=4096)
        self.num_classes: int = d.scalar("num_classes", doc.get("num_classes", 1000), "int",
                                         low=1, high=10**6)
        if family == "metaformer":
            self._parse_metaformer(doc)
        else:
            self._parse_convmixer(doc)
        self._parse_constraints(doc.get("constraints"))
        self.proxy_spec: ProxySpec = self._parse_proxy(doc.get("proxy"))
        if family == "metaformer":
            self._check_stages()
        else:
            self._check_convmixer()
        #: what a study records of its space: the document's digest without its description
        #: (a description edited mid-study changes nothing a trial measures)
        self.hash: str = _digest({k: v for k, v in doc.items() if k != "description"})
        #: the hashes a study of this space may carry: ``hash``, and the whole document's,
        #: description included, which studies begun before the description left it carry
        #: (a run of such a study rewrites it to ``hash``: ``Store.get_or_create_study``)
        self.hashes: tuple[str, ...] = tuple(dict.fromkeys((self.hash, _digest(doc))))
        self._check_probe()
        self._frozen = True  # parsed once: a Space is a value from here on

    def __setattr__(self, name: str, value: Any) -> None:
        if getattr(self, "_frozen", False):
            raise AttributeError(f"Space '{self.name}' is frozen (parsed once); cannot set "
                                 f"{name!r}: build a new Space from an edited document instead")
        object.__setattr__(self, name, value)

    # ---------------------------------------------------------------- metaformer parsing

    def _opt_choices(self, path: str, key: str, node: Any) -> tuple[Any, ...]:
        d = self._d
        if key in ("norm", "act"):
            return d.choices(path, node, "str", (NORMS if key == "norm" else ACTS).names())
        if key == "mlp_ratio":
            return d.choices(path, node, "float", low=1 / 64, high=64)
        return d.choices(path, node, "float", nullable=True)  # layer_scale, res_scale

    def _parse_metaformer(self, doc: Mapping[str, Any]) -> None:
        d = self._d
        stages = doc.get("stages")
        if not isinstance(stages, (list, tuple)) or not stages:
            raise d.fail("stages", "is required: a list with one entry per stage, each with a "
                                   f"mixer; got {short(stages)}")
        self.n_stages = n = len(stages)
        self.stem = d.choices("stem", doc.get("stem", "v2"), "str", STEMS)
        self.head = d.choices("head", doc.get("head", "mlp"), "str", HEADS)
        self.mlp_bias = d.choices("mlp_bias", doc.get("mlp_bias", False), "bool")
        defaults = {"norm": "ln_nobias", "act": "starrelu", "mlp_ratio": 4.0,
                    "layer_scale": None, "res_scale": None}
        self.glob: dict[str, tuple[Any, ...]] = {
            k: self._opt_choices(k, k, doc.get(k, v)) for k, v in defaults.items()}
        self.stages: list[dict[str, tuple[Any, ...]]] = []  # mixer + the stage's own overrides
        for i, st in enumerate(stages):
            p = f"stages[{i}]"
            d.keys(p, st, STAGE_KEYS)
            if "mixer" not in st:
                raise d.fail(f"{p}.mixer", f"is required: one or a list of "
                                           f"{', '.join(MIXERS.names())}")
            entry = {"mixer": d.choices(f"{p}.mixer", st["mixer"], "str", MIXERS.names())}
            for key in STAGE_OPTS:
                if key in st:
                    entry[key] = self._opt_choices(f"{p}.{key}", key, st[key])
            self.stages.append(entry)
        self.mixer_settings = self._parse_mixers(doc.get("mixers"))
        self._parse_depth(doc.get("depth"), n)
        self._parse_width(doc.get("width"), n)

    def _opt(self, i: int, key: str) -> tuple[Any, ...]:
        """The choices of ``key`` in stage ``i``: its own, else the global ones."""
        return self.stages[i].get(key, self.glob[key])

    def _parse_mixers(self, node: Any) -> dict[str, dict[str, tuple[Any, ...]]]:
        d = self._d
        node = d.section("mixers", node, MIXERS.names())
        used = {m for st in self.stages for m in st["mixer"]}
        out = {}
        for m in sorted(used | set(node)):  # settings of unused mixers are checked too
            mdef = MIXERS.get(m)
            given = d.section(f"mixers.{m}", node.get(m), list(mdef.defaults))
            settings = {}
            for key, default in mdef.defaults.items():
                kind = mdef.setting_kind(key)
                allowed = ACTS.names() if key == "act" else None
                high = 4096 if kind in ("int", "number") else None
                settings[key] = d.choices(f"mixers.{m}.{key}", given.get(key, default), kind,
                                          allowed, high=high)
            for combo in itertools.product(*settings.values()):
                args = dict(zip(settings, combo))
                width = 64 * mdef.width_quantum(args)  # a width every setting can divide
                try:
                    mdef.check(width, PROBE_GRID, **args)
                except ConfigError as e:
                    raise d.fail(f"mixers.{m}", str(e)) from None
            out[m] = settings
        return out

    def _parse_depth(self, node: Any, n: int) -> None:
        d = self._d
        if node is None:
            raise d.fail("depth", "is required: {total: [...], ratios: [...]} or "
                                  "{per_stage: [...]}")
        d.keys("depth", node, ("total", "ratios", "per_stage"))
        if "per_stage" in node:
            if len(node) > 1:
                raise d.fail("depth", "give either per_stage or total (with ratios), not both")
            per = node["per_stage"]
            if not isinstance(per, (list, tuple)) or len(per) != n:
                raise d.fail("depth.per_stage", f"must list one entry per stage ({n}), each a "
                                                f"depth or a list of depths; got {short(per)}")
            self.depth_mode = "per_stage"
            self.depth_per_stage = [
                d.choices(f"depth.per_stage[{i}]", v, "int", low=1, high=MAX_DEPTH)
                for i, v in enumerate(per)]
            return
        if "total" not in node:
            raise d.fail("depth.total", "is required (or give depth.per_stage instead)")
        self.depth_mode = "ratios"
        self.depth_total = d.choices("depth.total", node["total"], "int", low=n,
                                     high=MAX_DEPTH * n)
        self.depth_ratios = d.ratios("depth.ratios", node.get("ratios", ":".join(["1"] * n)), n)

    def _parse_width(self, node: Any, n: int) -> None:
        d = self._d
        if node is None:
            raise d.fail("width", "is required: {base, multipliers, divisor} or {lists: [...]}")
        d.keys("width", node, ("base", "multipliers", "divisor", "lists"))
        if "lists" in node:
            if len(node) > 1:
                raise d.fail("width", "give either lists or base (with multipliers, divisor), "
                                      "not both")
            self.width_mode = "lists"
            self.width_lists = d.ratios("width.lists", node["lists"], n, integer=True,
                                        high=MAX_WIDTH)
        else:
            if "base" not in node:
                raise d.fail("width.base", "is required (or give width.lists instead)")
            self.width_mode = "base"
            self.width_base = d.choices("width.base", node["base"], "int", low=1, high=MAX_WIDTH)
            self.width_mults = d.ratios("width.multipliers", node.get("multipliers", "1:2:4:8"),
                                        n, high=MAX_WIDTH)
            self.width_divisor = d.scalar("width.divisor", node.get("divisor", 8), "int", low=1,
                                          high=4096)
        for widths, where, what in self._all_widths():
            if max(widths) > MAX_WIDTH:
                raise d.fail(where, f"{what} gives widths {list(widths)}; widths must be <= "
                                    f"{MAX_WIDTH}")
            for i in range(1, n):
                if widths[i] == widths[i - 1]:
                    raise d.fail(where, f"{what} gives equal widths {list(widths)} at stages {i} "
                                        f"and {i + 1}; consecutive widths must differ")
            for i, st in enumerate(self.stages):
                for m in st["mixer"]:
                    key = MIXERS.get(m).width_multiple_of
                    for q in self.mixer_settings[m].get(key, ()) if key else ():
                        if widths[i] % q:
                            raise d.fail(where, f"{what} gives width {widths[i]} at stage "
                                         f"{i + 1}, which can be '{m}' with {key} {q}: "
                                         f"'{m}' widths must be multiples of {key} "
                                         f"(use a divisor that is a multiple of {q})")

    def _all_widths(self) -> Iterator[tuple[tuple[int, ...], str, str]]:
        """Every width choice: (widths, key path, which choice)."""
        if self.width_mode == "lists":
            for text, w in self.width_lists.items():
                yield w, "width.lists", f"'{text}'"
        else:
            for b, (text, m) in itertools.product(self.width_base, self.width_mults.items()):
                yield (tuple(round_width(b * x, self.width_divisor) for x in m),
                       "width.multipliers", f"'{text}' with base {b}")

    # ---------------------------------------------------------------- convmixer parsing

    def _parse_convmixer(self, doc: Mapping[str, Any]) -> None:
        d = self._d
        for key in ("width", "depth"):
            if key not in doc:
                raise d.fail(key, "is required: an integer or a list of integers")
        self.cm = {
            "width": d.choices("width", doc["width"], "int", low=1, high=MAX_WIDTH),
            "depth": d.choices("depth", doc["depth"], "int", low=1, high=MAX_DEPTH),
            "kernel_size": d.choices("kernel_size", doc.get("kernel_size", 9), "int", low=1,
                                     high=4096),
            "patch_size": d.choices("patch_size", doc.get("patch_size", 7), "int", low=1,
                                    high=self.resolution),
            "act": d.choices("act", doc.get("act", "gelu"), "str", ACTS.names()),
        }

    # ---------------------------------------------------------------- constraints, proxy

    def _parse_constraints(self, node: Any) -> None:
        d = self._d
        node = d.section("constraints", node, CONSTRAINT_KEYS)
        self.constraints = Constraints(
            conv_before_attention=d.scalar("constraints.conv_before_attention",
                                           node.get("conv_before_attention", False), "bool"),
            nondecreasing_widths=d.scalar("constraints.nondecreasing_widths",
                                          node.get("nondecreasing_widths", True), "bool"),
            max_macs=d.scalar("constraints.max_macs", node.get("max_macs"), "number",
                              nullable=True, low=1),
            max_params=d.scalar("constraints.max_params", node.get("max_params"), "number",
                                nullable=True, low=1),
        )

    def _parse_proxy(self, node: Any) -> ProxySpec:
        d = self._d
        node = d.section("proxy", node, PROXY_KEYS)
        base = ProxySpec()
        return ProxySpec(
            width_mult=d.scalar("proxy.width_mult", node.get("width_mult", base.width_mult),
                                "float", low=1e-3, high=1),
            depth_mult=d.scalar("proxy.depth_mult", node.get("depth_mult", base.depth_mult),
                                "float", low=1e-3, high=1),
            resolution=d.scalar("proxy.resolution", node.get("resolution", base.resolution),
                                "int", low=PROXY_RESOLUTIONS[0], high=PROXY_RESOLUTIONS[1]),
            stem_stride=d.scalar("proxy.stem_stride", node.get("stem_stride", base.stem_stride),
                                 "int", STEM_STRIDES),
            patch_size=d.scalar("proxy.patch_size", node.get("patch_size", base.patch_size),
                                "int", low=1, high=1024),
        )

    # ---------------------------------------------------------------- whole-space checks

    def _check_stages(self) -> None:
        """Every stage's mixer settings and MLP ratio at every width it can take, in the full
        model and in its proxy, so that no sample and no proxy can fail to build."""
        d, p, n = self._d, self.proxy_spec, self.n_stages
        full, small = grid_sides(self.resolution, 4, n), grid_sides(p.resolution, p.stem_stride, n)
        if small[-1] < 1:
            raise d.fail("proxy.resolution", f"{p.resolution} px with stem_stride "
                                             f"{p.stem_stride} leaves no pixels at the last "
                                             f"stage (grids {small}); use a larger resolution")
        all_widths = [w for w, _, _ in self._all_widths()]
        lowered = self._lowered_proxy_widths(all_widths)
        for i, st in enumerate(self.stages):
            widths = sorted({w[i] for w in all_widths})
            lowest = widths[0]
            for m in st["mixer"]:
                mdef, settings = MIXERS.get(m), self.mixer_settings[m]
                for combo in itertools.product(*settings.values()):
                    args = dict(zip(settings, combo))
                    for w in widths:
                        pw, pargs, q = proxy_stage(w, m, args, p)
                        sizes = [("", w, args, full[i]), (" in the proxy", pw, pargs, small[i])]
                        low = lowered.get((i, q), pw)
                        if low < pw:  # (widths that shrink: proxy_widths may go below pw)
                            sizes.append((f" in the proxy (below stage {i}'s)", low, pargs,
                                          small[i]))
                            lowest = min(lowest, low)
                        for note, ww, aa, g in sizes:
                            try:
                                mdef.check(ww, (g, g), **aa)
                            except ConfigError as e:
                                raise d.fail(f"stages[{i}].mixer",
                                             f"'{m}' at width {ww}{note}: {e}") from None
                        lowest = min(lowest, pw)
            for r in self._opt(i, "mlp_ratio"):
                if int(r * lowest) < 1:
                    raise d.fail(f"stages[{i}].mlp_ratio", f"{r:g} x width {lowest} (the "
                                 "narrowest this stage gets, proxy included) leaves no hidden "
                                 f"channels; use an mlp_ratio >= {1 / lowest:g}")

    def _lowered_proxy_widths(self, all_widths: list[tuple[int, ...]]
                              ) -> dict[tuple[int, int], int]:
        """(stage, width quantum) -> the narrowest proxy width :func:`proxy_widths` gives such a
        stage where it lowers it below its own scaled width (a step down that rounding made
        flat or turned round); empty in a space whose widths never shrink (it only raises)."""
        if not any(b < a for w in all_widths for a, b in zip(w, w[1:])):
            return {}
        p = self.proxy_spec
        quanta = [sorted({proxy_stage(8, m, dict(zip(self.mixer_settings[m], combo)), p)[2]
                          for m in st["mixer"]
                          for combo in itertools.product(*self.mixer_settings[m].values())})
                  for st in self.stages]
        low: dict[tuple[int, int], int] = {}
        for full in all_widths:
            for qs in itertools.product(*quanta):
                scaled = [round_width(w * p.width_mult, q) for w, q in zip(full, qs)]
                for i, (got, own, q) in enumerate(zip(proxy_widths(full, scaled, qs), scaled,
                                                      qs)):
                    if got < own and got < low.get((i, q), own):
                        low[(i, q)] = got
        return low

    def _check_convmixer(self) -> None:
        p = self.proxy_spec
        if p.patch_size > p.resolution:
            raise self._d.fail("proxy.patch_size", f"{p.patch_size} is larger than the proxy "
                                                   f"resolution {p.resolution}")

    def _check_probe(self, samples: int = 8) -> None:
        """Internal safety net: the first choices and a few random samples, full and proxy,
        pass ``validate`` (the checks above are meant to make this impossible to fail)."""
        for trial in [FirstChoice()] + [RandomTrial(k) for k in range(samples)]:
            arch = self.sample(trial)
            try:
                validate(arch)
                validate(self.proxy(arch, self.num_classes))
            except ConfigError as e:
                params = getattr(trial, "params", "first choices")
                raise self._d.fail("(sampled configuration)", f"{e} (parameters {params})"
                                   ) from None

    # ---------------------------------------------------------------- sampling

    def sample(self, trial: TrialLike) -> ArchSpec:
        """Define-by-run sampling; fixed values are not suggested (they are not parameters)."""
        pick = Picker(trial)
        if self.family == "convmixer":
            c = {k: pick(k, v) for k, v in self.cm.items()}
            return ConvMixerSpec(num_classes=self.num_classes, img_size=self.resolution, **c)
        if self.depth_mode == "ratios":
            total = pick("depth/total", self.depth_total)
            ratio = self.depth_ratios[pick("depth/ratios", tuple(self.depth_ratios))]
            depths = split_depth(total, ratio)
        else:
            depths = tuple(pick(f"stage{i + 1}/depth", c)
                           for i, c in enumerate(self.depth_per_stage))
        if self.width_mode == "lists":
            widths = self.width_lists[pick("width/lists", tuple(self.width_lists))]
        else:
            base = pick("width/base", self.width_base)
            mult = self.width_mults[pick("width/multipliers", tuple(self.width_mults))]
            widths = tuple(round_width(base * m, self.width_divisor) for m in mult)
        shared = {k: pick(k, self.glob[k]) for k in STAGE_OPTS
                  if any(k not in st for st in self.stages)}
        stages = []
        for i, st in enumerate(self.stages):
            s = f"stage{i + 1}"
            mixer = pick(f"{s}/mixer", st["mixer"])
            args = {k: pick(f"{s}/{mixer}/{k}", v) for k, v in self.mixer_settings[mixer].items()}
            opts = {k: pick(f"{s}/{k}", st[k]) if k in st else shared[k] for k in STAGE_OPTS}
            stages.append(StageSpec(depth=depths[i], width=widths[i], mixer=mixer,
                                    mixer_args=args, **opts))
        return MetaFormerSpec(
            stages=tuple(stages), stem=pick("stem", self.stem), head=pick("head", self.head),
            mlp_bias=pick("mlp_bias", self.mlp_bias), num_classes=self.num_classes,
            img_size=self.resolution,
        )

    def sample_random(self, seed: int | random.Random | None = None, *, feasible: bool = True,
                      max_tries: int = 1000) -> tuple[ArchSpec, dict[str, Any]]:
        """Uniform random sample (rejection sampling on the constraints when ``feasible``).

        When none of ``max_tries`` draws is feasible (constraints that admit a tiny share of a
        large space), the next draws start a :meth:`local_search`, whose find is feasible but
        not uniform; :class:`SpaceError` when that finds none either."""
        rng = seed if isinstance(seed, random.Random) else random.Random(seed)
        failed: Counter[str] = Counter()  # draws each constraint rejected
        example: dict[str, str] = {}  # per constraint, the first rejection's reason
        for _ in range(max_tries):
            trial = RandomTrial(rng)
            arch = self.sample(trial)
            broken = self.violations(arch) if feasible else []
            if not broken:
                return arch, trial.params
            for reason in broken:
                name, _, detail = reason.partition(":")
                failed[name] += 1
                example.setdefault(name, detail.strip())
        if feasible:
            arch, params, nearest = self.local_search(rng)
            if arch is not None:
                return arch, params
        why = "; ".join(f"{name} rejected {n}, e.g. {example[name]}"
                        for name, n in failed.most_common())
        raise SpaceError(f"{self.source}: constraints: no feasible configuration in {max_tries} "
                         f"random draws ({why}) nor in a local search from "
                         f"{LOCAL_SEARCH_STARTS} more (the nearest: {'; '.join(nearest)}); "
                         "loosen the constraints (`python -m nas spaces show SPACE` gives its "
                         "cost ranges and feasible share)")

    def local_search(self, rng: random.Random, *, starts: int = LOCAL_SEARCH_STARTS,
                     taken: Container[str] = ()) -> tuple[ArchSpec | None, dict[str, Any],
                                                          list[str]]:
        """A feasible configuration whose architecture hash is not in ``taken``, found by
        coordinate descent on the constraints' summed excess (:meth:`constraint_values` above
        zero): from each of ``starts`` seeded draws, every other choice of each parameter is
        tried with the rest held and the best move taken, until none lowers the excess (among
        feasible configurations, until one is not ``taken``).

        Returns ``(arch, params, [])``, or ``(None, {}, violations)`` with the violations of
        the nearest configuration it reached when it finds none. A local search, not a proof:
        it can miss a feasible region no descent from its starts leads into. On
        ``hybrid_conv_attn`` with nothing feasible, its 20 starts take about 0.15 s.
        """
        scored: dict[str, tuple[float, bool]] = {}

        def key(arch: ArchSpec) -> tuple[float, bool]:
            h = arch_hash(arch)
            if h not in scored:
                scored[h] = (sum(max(0.0, v) for v in self.constraint_values(arch)), h in taken)
            return scored[h]

        nearest: tuple[tuple[float, bool], ArchSpec] | None = None
        for _ in range(starts):
            trial = SetTrial({}, rng)
            arch = self.sample(trial)
            best = key(arch)
            moved = True
            while moved and best != (0.0, False):
                moved = False
                for name in list(trial.params):
                    if name not in trial.params:  # no longer asked after an earlier move
                        continue
                    for choice in trial.choices[name]:
                        if choice == trial.params[name]:
                            continue
                        t = SetTrial({**trial.params, name: choice}, rng)
                        a = self.sample(t)
                        k = key(a)
                        if k < best:
                            trial, arch, best, moved = t, a, k, True
            if best == (0.0, False):
                return arch, trial.params, []
            if nearest is None or best < nearest[0]:
                nearest = (best, arch)
        return None, {}, self.violations(nearest[1]) if nearest else []

    def feasible_size(self, limit: int = 10_000) -> int | None:
        """How many distinct architectures (by :func:`arch_hash`, as a search tells duplicates)
        meet the constraints, counted one by one; None when the space has more than ``limit``
        configurations (about 0.15 ms each)."""
        counts = self.feasible_counts(limit)
        return None if counts is None else counts[1]

    def feasible_counts(self, limit: int = 10_000) -> tuple[int, int] | None:
        """(configurations, distinct architectures) that meet the constraints, counted one by
        one; they differ where choices give the same model (depths that round alike). None
        when the space has more than ``limit`` configurations."""
        if self.size() > limit:
            return None
        feasible = [arch for arch, _ in every_choice(self.sample) if not self.violations(arch)]
        return len(feasible), len({arch_hash(arch) for arch in feasible})

    # ---------------------------------------------------------------- constraints

    def violations(self, arch: ArchSpec) -> list[str]:
        """Constraint violations (empty when feasible), checked with the analytic cost model."""
        return self.constraints.violations(arch)

    def constraint_values(self, arch: ArchSpec) -> tuple[float, ...]:
        """One number per active constraint, <= 0 when it holds (Optuna's convention)."""
        return self.constraints.values(arch)

    @property
    def max_macs(self) -> float | None:
        return self.constraints.max_macs

    @property
    def max_params(self) -> float | None:
        return self.constraints.max_params

    # ---------------------------------------------------------------- proxy

    def proxy(self, arch: ArchSpec, num_classes: int) -> ArchSpec:
        """The reduced model that is trained: narrower, shallower, smaller input, adapted stem."""
        return reduce_to_proxy(arch, self.proxy_spec, num_classes)

    def proxy_resolution(self, **kwargs: Any):
        """Which choices the proxy does not tell apart (:func:`search_spaces._resolution.
        proxy_resolution`; ``draws``, ``pair_draws``, ``seed``)."""
        from search_spaces._resolution import proxy_resolution

        return proxy_resolution(self, **kwargs)

    # ---------------------------------------------------------------- describing

    def parameters(self) -> dict[str, tuple[Any, ...]]:
        """Every Optuna parameter name with its choices (conditional ones included)."""
        rec = NameRecorder()
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
            n *= sum(math.prod(len(v) for v in self.mixer_settings[m].values())
                     for m in st["mixer"])
            n *= math.prod(len(st[k]) for k in STAGE_OPTS if k in st)
        for k in STAGE_OPTS:
            if any(k not in st for st in self.stages):
                n *= len(self.glob[k])
        return n
