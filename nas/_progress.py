"""The live progress view of a search (driver side).

One status line: completed of the budget, running, failed, pruned, the size of the current
non-dominated front over the study's objectives, the best accuracy within the space's MACs limit
(``constraints: max_macs``; else over all MACs), elapsed time and an ETA. On a terminal it stays
at the bottom, redrawn every second under the per-trial lines; otherwise (a log file, a pipe, a
test's ``log``) it is printed as a ``[progress]`` line every ``every`` seconds and once at the end.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from nas.results import Objective, TrialResult

__all__ = ["Progress", "ParetoSet", "format_duration"]


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class ParetoSet:
    """The non-dominated set of the points added so far, kept incrementally (every coordinate
    is maximised; a ``min`` objective is added negated)."""

    def __init__(self) -> None:
        self.front: list[tuple[float, ...]] = []

    @staticmethod
    def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    def add(self, point: Sequence[float]) -> bool:
        """Add a point; True when it is on the front now."""
        p = tuple(float(v) for v in point)
        if any(self._dominates(q, p) for q in self.front):
            return False
        self.front = [q for q in self.front if not self._dominates(p, q)] + [p]
        return True

    def __len__(self) -> int:
        return len(self.front)


class Progress:
    """Counts a search's trials and shows them (see the module docstring).

    Args:
        budget: completed trials the study should reach.
        objectives: the study's, for the front.
        prior: the study's completed trial records before this run (a resume).
        max_macs: the space's MACs limit, for "best accuracy within it".
        log: where the per-trial lines go (``print`` on a terminal gets the live line).
        every: seconds between ``[progress]`` lines when not live (0: only the final one).
        live: redraw a status line on ``stream`` (default: ``log is print`` and a terminal).
        pruned_before: the study's PRUNED trials before this run.
        count_pruned: the budget counts pruned trials too (``--scheduler asha``).
    """

    def __init__(self, budget: int, objectives: Sequence[Objective], prior: Iterable[Any] = (),
                 *, max_macs: float | None = None, log: Callable[[str], None] = print,
                 every: float = 30.0, live: bool | None = None, stream=None,
                 pruned_before: int = 0, count_pruned: bool = False) -> None:
        self.budget, self.objectives, self.max_macs = budget, tuple(objectives), max_macs
        self._log, self.every = log, every
        self.stream = stream if stream is not None else sys.stdout
        if live is None:
            live = log is print and bool(getattr(self.stream, "isatty", lambda: False)())
        self.live = live
        self.done = self.running = self.failed = self.done_here = 0
        self.reused_here = 0  # of done_here, recorded with a proxy twin's result (no training)
        self.pruned, self.count_pruned = pruned_before, count_pruned
        self.best: tuple[float, float, int | None] | None = None  # (accuracy, macs, number)
        self.front = ParetoSet()
        for t in prior:
            values = [o.of(t) for o in self.objectives]
            self.done += 1
            if None not in values:
                self._add(values, t.accuracy, t.macs, t.number)
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._shown = False  # a live line is on screen
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ events
    def started(self) -> None:
        with self._lock:
            self.running += 1

    def completed(self, res: TrialResult, number: int | None = None) -> None:
        with self._lock:
            self.running = max(0, self.running - 1)
            self.done += 1
            self.done_here += 1
            self._add([res.value(o.name) for o in self.objectives], res.accuracy, res.macs,
                      number)

    def reused(self, res: TrialResult, number: int | None = None) -> None:
        """A trial recorded with its proxy twin's result: completed, never running (and left
        out of the ETA's rate: it took no training)."""
        with self._lock:
            self.done += 1
            self.done_here += 1
            self.reused_here += 1
            self._add([res.value(o.name) for o in self.objectives], res.accuracy, res.macs,
                      number)

    def failed_one(self) -> None:
        with self._lock:
            self.running = max(0, self.running - 1)
            self.failed += 1

    def lost_one(self) -> None:
        """A trial whose worker went away: no longer running, its architecture asked again."""
        with self._lock:
            self.running = max(0, self.running - 1)

    def pruned_one(self) -> None:
        with self._lock:
            self.running = max(0, self.running - 1)
            self.pruned += 1
            if self.count_pruned:
                self.done_here += 1

    def _add(self, values: Sequence[float], accuracy: float | None, macs: float | None,
             number: int | None) -> None:
        if all(v is not None and math.isfinite(v) for v in values):
            self.front.add([v if o.direction == "max" else -v
                            for v, o in zip(values, self.objectives)])
        if accuracy is None or macs is None:
            return
        if self.max_macs is not None and macs > self.max_macs:
            return
        if self.best is None or (accuracy, -macs) > (self.best[0], -self.best[1]):  # tie: cheaper
            self.best = (float(accuracy), float(macs), number)

    # ------------------------------------------------------------------ text
    def line(self) -> str:
        """The status line (counts, front, best, elapsed, ETA)."""
        elapsed = time.monotonic() - self.t0
        used = self.done + (self.pruned if self.count_pruned else 0)  # what the budget counts
        parts = [f"{used}/{self.budget} evaluated · {self.done} completed" if self.count_pruned
                 else f"{self.done}/{self.budget} done", f"{self.running} running",
                 f"{self.failed} failed", f"{self.pruned} pruned", f"front {len(self.front)}"]
        limit = ("" if self.max_macs is None
                 else f" within {self.max_macs / 1e9:g} GMACs")
        if self.best is not None:
            at = "" if self.best[2] is None else f" (#{self.best[2]})"
            parts.append(f"best acc{limit} {self.best[0]:.4f} at {self.best[1] / 1e9:.3f} "
                         f"GMACs{at}")
        else:
            parts.append(f"best acc{limit} -")
        parts.append(f"elapsed {format_duration(elapsed)}")
        left = self.budget - used
        if left <= 0:
            parts.append("ETA 0 s")
        elif self.done_here > self.reused_here:  # the rate of the trials that trained
            rate = elapsed / (self.done_here - self.reused_here)
            parts.append(f"ETA {format_duration(rate * left)}")
        else:
            parts.append("ETA -")
        return " · ".join(parts)

    # ------------------------------------------------------------------ output
    def log(self, message: str) -> None:
        """A per-trial line: printed above the live status line."""
        with self._lock:
            if self.live:
                self._clear()
                self.stream.write(message + "\n")
                self._draw()
            else:
                self._log(message)

    def _clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[2K")
            self._shown = False

    def _draw(self) -> None:
        import shutil

        width = shutil.get_terminal_size((120, 24)).columns
        text = self.line()
        self.stream.write("\r\x1b[2K" + (text if len(text) < width else text[:width - 2] + "…"))
        self.stream.flush()
        self._shown = True

    def _tick(self) -> None:
        wait = 1.0 if self.live else self.every
        while not self._stop.wait(wait):
            with self._lock:
                if self.live:
                    self._draw()
                else:
                    self._log(f"[progress] {self.line()}")

    def start(self) -> Progress:
        """Start the redraws (live) or the periodic lines."""
        if self._thread is None and (self.live or self.every > 0):
            self._thread = threading.Thread(target=self._tick, name="nas-progress", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the redraws and print the final status line."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            if self.live:
                self._clear()
                self.stream.write(f"[progress] {self.line()}\n")
                self.stream.flush()
            else:
                self._log(f"[progress] {self.line()}")
