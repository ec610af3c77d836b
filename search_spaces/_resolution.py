"""What the proxy can tell apart: choices of a space that reduce to the same trained model.

The proxy is narrower, shallower and smaller than the model it ranks (``proxy:`` in a space,
:func:`nas.models.proxy.reduce_to_proxy`), and rounding makes some choices collapse: in ``tiny``
a total depth of 4 and of 6 both give one block per stage, and an attention ``head_dim`` of 16
and of 32 both become 8 at width x 0.25. Two such architectures train the *same* proxy with the
same seed, so their accuracies are one measurement (equal to the last digit on CPU), and a front
then prefers the cheaper one on cost alone. :func:`proxy_resolution` finds these choices, so
``spaces show`` and the search can say so before anyone reads a front.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from nas.models.arch import arch_hash
from search_spaces._sampling import RandomTrial, SetTrial, every_choice

__all__ = ["ChoicePair", "ProxyResolution", "proxy_resolution"]

EXACT_LIMIT = 2_000  # spaces at most this large are examined configuration by configuration
PAIR_DRAWS = 200  # configurations whose one-parameter changes are tried (about 2 s on hca)
MIN_ALWAYS = 3  # configurations a pair must be tried in before "always" is said of it
NEIGHBOURS = 6  # of each parameter's other choices, the nearest this many in its list are tried


@dataclass(frozen=True)
class ChoicePair:
    """Two choices of one parameter; changing only that parameter from one to the other left
    the proxy unchanged in ``same`` of the ``tried`` configurations where it was tried."""

    param: str
    a: Any
    b: Any
    same: int
    tried: int

    @property
    def always(self) -> bool:
        """Kept the proxy every time, in at least ``MIN_ALWAYS`` configurations."""
        return self.same == self.tried >= MIN_ALWAYS

    def describe(self) -> str:
        """``depth/total 4 and 6 (always)``, ``width/base 64 and 72 (12 of 40 tried)``."""
        how = "always" if self.always else f"in {self.same} of {self.tried} configurations tried"
        return f"{self.param} {self.a} and {self.b} ({how})"


@dataclass(frozen=True)
class ProxyResolution:
    """How many architectures of a space share their proxy with another, and by which choices.

    ``architectures`` and ``proxies`` count the distinct full models and proxies among the
    ``examined`` configurations (every one when ``exact``, else seeded uniform draws: then
    ``shared`` grows with the draws, and ``twinned`` of ``probed``, which does not, is the
    share to read)."""

    examined: int
    exact: bool
    architectures: int
    proxies: int
    shared: int  # architectures whose proxy is another examined architecture's too
    pairs: tuple[ChoicePair, ...]  # choices the proxy did not tell apart, most often first
    probed: int  # configurations whose one-choice changes were tried
    twinned: int  # of those, how many have a twin one choice away

    @property
    def resolves_all(self) -> bool:
        return self.shared == 0 and not self.pairs

    @property
    def twinned_share(self) -> float:
        """The share of architectures with a twin: exact, or one choice away in the probes."""
        if self.exact:
            return self.shared / max(1, self.architectures)
        return self.twinned / max(1, self.probed)

    def advice(self) -> str:
        """Which proxy setting would tell the reported choices apart ('' when none would)."""
        knobs = []
        if any("depth" in p.param for p in self.pairs):
            knobs.append("a larger proxy.depth_mult")
        if any("width" in p.param or p.param.endswith("head_dim") for p in self.pairs):
            knobs.append("a larger proxy.width_mult")
        advice = " or ".join(knobs) + " would tell them apart (a costlier proxy)" if knobs else ""
        if any(p.param == "patch_size" for p in self.pairs):  # ConvMixer: the proxy sets its own
            advice += ("; " if advice else "") + ("the proxy trains every patch size with "
                                                  "proxy.patch_size: they differ in cost only")
        return advice

    def summary(self) -> str:
        """One line: how much of the space shares a proxy."""
        if self.resolves_all and self.architectures == 1:
            return "the space has one architecture: nothing for the proxy to tell apart"
        if self.resolves_all:
            return ("the proxy trains a different model for every one of the "
                    f"{self.architectures:,} distinct architectures "
                    + ("of the space" if self.exact else f"in {self.examined:,} random draws"))
        if self.exact:
            share = (f"{self.shared:,} of the space's {self.architectures:,} distinct "
                     f"architectures share their proxy with another ({self.proxies:,} "
                     "distinct proxies)")
        else:
            share = (f"{self.twinned} of {self.probed} random configurations have a twin one "
                     f"choice away ({self.twinned_share:.0%})")
        return (f"{share}: the accuracies of such twins are one measurement, and a front "
                "tells them apart by cost alone")

    @property
    def worth_a_note(self) -> bool:
        """Whether a search should say so at its start: a choice the proxy never tells apart,
        or at least 5% of the architectures sharing a proxy."""
        return any(p.always for p in self.pairs) or self.twinned_share >= 0.05

    def lines(self, limit: int = 8) -> list[str]:
        """What ``spaces show`` (and a search's start) says of the proxy's resolution."""
        lines = [f"proxy twins: {self.summary()}"]
        if self.pairs:
            shown = "; ".join(p.describe() for p in self.pairs[:limit])
            more = f"; and {len(self.pairs) - limit} more" if len(self.pairs) > limit else ""
            lines.append(f"  choices the proxy trains as one model: {shown}{more}")
        if self.advice():
            lines.append(f"  {self.advice()}")
        return lines


def _proxy_key(space, arch) -> str:
    return arch_hash(space.proxy(arch, 10))  # the class count is the same for every trial


def proxy_resolution(space, *, draws: int = 2_000, pair_draws: int = PAIR_DRAWS,
                     seed: int = 0) -> ProxyResolution:
    """The proxy's resolution of ``space`` (constraints ignored: they do not change the proxy).

    Every configuration is examined when the space has at most ``EXACT_LIMIT`` (and
    ``draws``), else ``draws`` seeded uniform draws. For ``pair_draws`` of them, drawn at
    random, each parameter's other choices nearest in its list (``NEIGHBOURS``, so a parameter
    with hundreds of values costs no more than one with seven) are tried with the rest held (a
    change that makes the space ask other parameters, a mixer for one, is not a one-parameter
    change and is skipped); a pair is reported when the proxy stayed the same while the full
    architecture changed.
    """
    exact = space.size() <= min(EXACT_LIMIT, draws)
    if exact:
        configs = list(every_choice(space.sample))
    else:
        rng = random.Random(seed)
        configs = []
        for _ in range(draws):
            trial = RandomTrial(rng)
            configs.append((space.sample(trial), trial.params))
    by_proxy: dict[str, set[str]] = defaultdict(set)
    keys = []
    for arch, _ in configs:
        full, proxy = arch_hash(arch), _proxy_key(space, arch)
        by_proxy[proxy].add(full)
        keys.append((full, proxy))
    shared = sum(len(fulls) for fulls in by_proxy.values() if len(fulls) > 1)
    architectures = sum(len(fulls) for fulls in by_proxy.values())

    counts: dict[tuple[str, int, int], list[int]] = defaultdict(lambda: [0, 0])
    values: dict[tuple[str, int, int], tuple[Any, Any]] = {}
    rng = random.Random(seed + 1)
    chosen = sorted(rng.sample(range(len(configs)), min(pair_draws, len(configs))))
    probes = [(configs[k], keys[k]) for k in chosen]  # random: a stride through every_choice's
    # depth-first order would keep landing on the same value of the fastest-changing parameter
    twinned = 0
    for (arch, params), (full, proxy) in probes:
        has_twin = False
        probe = SetTrial(dict(params), rng)
        space.sample(probe)  # each parameter's choices, as asked for this configuration
        for name, value in params.items():
            choices = probe.choices[name]
            i = choices.index(value)
            near = sorted((j for j in range(len(choices)) if j != i), key=lambda j: abs(j - i))
            for j in near[:NEIGHBOURS]:  # rounding merges neighbouring values of a list
                changed = SetTrial({**params, name: choices[j]}, rng)
                arch2 = space.sample(changed)
                if changed.params.keys() != params.keys():
                    continue  # other parameters asked: not a change of this one alone
                if arch_hash(arch2) == full:
                    continue  # the same model (depths that round alike): a search's duplicate
                key = (name, min(i, j), max(i, j))
                values[key] = (choices[key[1]], choices[key[2]])
                counts[key][1] += 1
                same = _proxy_key(space, arch2) == proxy
                counts[key][0] += same
                has_twin |= same
        twinned += has_twin
    pairs = [ChoicePair(name, *values[(name, i, j)], same, tried)
             for (name, i, j), (same, tried) in counts.items() if same]
    pairs.sort(key=lambda p: (not p.always, -p.same, p.param, str(p.a), str(p.b)))
    return ProxyResolution(len(configs), exact, architectures, len(by_proxy), shared,
                           tuple(pairs), len(probes), twinned)
