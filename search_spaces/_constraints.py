"""Cross-stage and cost constraints of a space, checked on an ArchSpec before anything is built."""

from __future__ import annotations

from dataclasses import dataclass

from nas.models import MIXERS, ArchSpec, MetaFormerSpec, analytic_cost

__all__ = ["Constraints"]


@dataclass(frozen=True)
class Constraints:
    """The ``constraints:`` section of a space."""

    conv_before_attention: bool = False  # no local (conv/pool) stage after a global one
    nondecreasing_widths: bool = True  # stage widths never shrink
    max_macs: float | None = None  # full-model MACs limit
    max_params: float | None = None  # full-model parameter limit

    @property
    def names(self) -> tuple[str, ...]:
        """The active constraints, in the order of :meth:`values`."""
        flags = (("conv_before_attention", self.conv_before_attention),
                 ("nondecreasing_widths", self.nondecreasing_widths),
                 ("max_macs", self.max_macs is not None),
                 ("max_params", self.max_params is not None))
        return tuple(name for name, on in flags if on)

    def values(self, arch: ArchSpec) -> tuple[float, ...]:
        """One number per active constraint (:attr:`names`), <= 0 when it holds (Optuna's
        convention): stages out of order, the relative width decrease, or the relative excess
        of MACs and parameters over their limits."""
        out = []
        if self.conv_before_attention:
            bad = 0.0
            if isinstance(arch, MetaFormerSpec):
                kinds = [MIXERS.get(s.mixer).kind for s in arch.stages]
                first_global = next((i for i, k in enumerate(kinds) if k == "global"), len(kinds))
                bad = float(sum(k == "local" for k in kinds[first_global:]))
            out.append(bad)
        if self.nondecreasing_widths:
            drop = 0.0
            if isinstance(arch, MetaFormerSpec):
                w = arch.widths
                drop = sum(max(0.0, (a - b) / a) for a, b in zip(w, w[1:]))
            out.append(drop)
        if self.max_macs is not None or self.max_params is not None:
            cost = analytic_cost(arch)
            if self.max_macs is not None:
                out.append((cost.macs - self.max_macs) / self.max_macs)
            if self.max_params is not None:
                out.append((cost.params - self.max_params) / self.max_params)
        return tuple(out)

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
                        out.append(f"conv_before_attention: stage {i + 1} is "
                                   f"'{arch.stages[i].mixer}' after an attention-type stage")
                        break
            widths = arch.widths
            if self.nondecreasing_widths and any(b < a for a, b in zip(widths, widths[1:])):
                out.append(f"nondecreasing_widths: widths {list(widths)} decrease")
        if self.max_macs is not None or self.max_params is not None:
            cost = analytic_cost(arch)
            if self.max_macs is not None and cost.macs > self.max_macs:
                out.append(f"max_macs: {cost.macs / 1e9:.4g} GMACs > {self.max_macs / 1e9:.4g}")
            if self.max_params is not None and cost.params > self.max_params:
                out.append(f"max_params: {cost.params / 1e6:.4g} M > {self.max_params / 1e6:.4g}")
        return out
