"""Memory a new allocation can get, and a lower bound of what building or training a model
takes: checked before a model is built, so that one too large for the machine is refused (an
export) or failed (a search trial) in one line instead of dying in the allocator."""

from __future__ import annotations

from typing import Any

__all__ = ["available_memory", "gb", "is_out_of_memory", "training_bytes"]

BYTES_PER_PARAM_TRAINING = 16  # float32 weights, gradients and AdamW's two moments


def available_memory() -> int | None:
    """Bytes a new allocation can get: Linux's ``MemAvailable``, capped by this process's cgroup
    (v2 ``memory.max`` less ``memory.current``) and its address-space limit (``ulimit -v``, less
    what it maps already) where they are set; None when none can be read."""
    free = None
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit != resource.RLIM_INFINITY:
            with open("/proc/self/status") as f:
                mapped = next(int(line.split()[1]) * 1024 for line in f
                              if line.startswith("VmSize:"))
            free = max(0, limit - mapped)
    except (ImportError, OSError, ValueError, StopIteration):
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    host = int(line.split()[1]) * 1024
                    free = host if free is None else min(free, host)
                    break
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit != "max":
            with open("/sys/fs/cgroup/memory.current") as f:
                left = int(limit) - int(f.read().strip())
            free = left if free is None else min(free, left)
    except (OSError, ValueError):
        pass
    return free


def gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def training_bytes(cost: Any, batch: int) -> int:
    """At least what training a model of ``cost`` (an analytic cost: ``params``, ``acts`` per
    image) at ``batch`` takes: 16 bytes a parameter, and each counted activation of each image
    kept once in float32 for the backward pass (the true figure is higher)."""
    return BYTES_PER_PARAM_TRAINING * cost.params + 4 * cost.acts * batch


def is_out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` is an allocation failure (Python's, or PyTorch's CPU or CUDA allocator)."""
    text = str(e)
    return isinstance(e, MemoryError) or "can't allocate memory" in text or \
        "out of memory" in text.lower()
