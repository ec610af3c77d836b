"""An FFCV pipeline stage applying a torch function to each batch.

FFCV wraps a bare nn.Module in ModuleWrapper, which emits a ResourceWarning on every epoch when
the data is on the CPU; this stage does the same quietly, and also takes plain functions.
Import it lazily: it imports ffcv.
"""

from __future__ import annotations

from proxies.ffcv_import import import_ffcv

import_ffcv()

from dataclasses import replace  # noqa: E402
from typing import Callable  # noqa: E402

import torch  # noqa: E402
from ffcv.pipeline.allocation_query import AllocationQuery  # noqa: E402
from ffcv.pipeline.operation import Operation  # noqa: E402
from ffcv.pipeline.state import State  # noqa: E402


class TorchOp(Operation):
    """Apply `fn` (an nn.Module or any tensor function) to each batch; shape and dtype kept."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def generate_code(self) -> Callable:
        fn = self.fn

        def apply(inp: torch.Tensor, _dst: object) -> torch.Tensor:
            return fn(inp)

        return apply

    def declare_state_and_memory(self,
                                 previous_state: State) -> tuple[State, AllocationQuery | None]:
        return replace(previous_state, jit_mode=False), None
