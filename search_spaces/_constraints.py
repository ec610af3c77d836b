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
                out.append(f"max_macs: {cost.macs / 1e9:.3f} GMACs > {self.max_macs / 1e9:.3f}")
            if self.max_params is not None and cost.params > self.max_params:
                out.append(f"max_params: {cost.params / 1e6:.3f} M > {self.max_params / 1e6:.3f}")
        return out
