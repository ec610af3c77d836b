"""Optuna samplers by name, seeded, with the space's constraints wired into Optuna's own mechanism.

The searcher gives every proposal its constraint values with Optuna's ``Trial.set_constraint``
(one per active constraint of the space, by name, feasible when <= 0; see
``Constraints.values``) when it is asked. It still refuses infeasible proposals before anything
is built, and tells them to Optuna as PRUNED, the state (with COMPLETE) Optuna's samplers learn
from: NSGA-II/III rank by constrained domination, TPE and GP split feasible from infeasible, so
they learn where the infeasible region is instead of re-proposing it.
"""

from __future__ import annotations

import optuna

__all__ = ["SAMPLERS", "make_sampler"]

#: The names ``--sampler`` accepts.
SAMPLERS: tuple[str, ...] = ("nsga2", "nsga3", "tpe", "gp", "qmc", "random")
POPULATION = 8  # NSGA-II/III generation size: small, so selection starts within a short budget


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` (one of :data:`SAMPLERS`) seeded with ``seed``.

    All but ``qmc`` and ``random`` (which do not learn from results) use the constraints.
    ``qmc`` is a scrambled Sobol sequence over the numeric parameters; Optuna draws categorical
    ones (most of a MetaFormer space) independently at random, so on such spaces it is close to
    ``random``.
    """
    import warnings

    from nas.errors import ConfigError

    with warnings.catch_warnings():  # TPE's `group` and QMC are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _make(name, seed, ConfigError)


def _make(name: str, seed: int, error: type[Exception]) -> optuna.samplers.BaseSampler:
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=POPULATION)
    if name == "nsga3":
        return optuna.samplers.NSGAIIISampler(seed=seed, population_size=POPULATION)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True,
                                          warn_independent_sampling=False,
                                          warn_asynchronous_seeding=False)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise error(f"--sampler must be one of {', '.join(SAMPLERS)}; got {name!r}")
