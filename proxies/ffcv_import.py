"""Import FFCV without paying ~3 s of numba JIT for a two-entry lookup table."""

from __future__ import annotations

import sys
import threading

_lock = threading.Lock()


def import_ffcv() -> None:
    """Import ffcv once per process, skipping the numba compile its image field triggers.

    ffcv.fields.rgb_image builds `IMAGE_MODES = numba.typed.Dict()` at import time; the first
    insertion JIT-compiles numba's typed-dict code (~3 s per fresh process). The table is only
    ever read from Python (never inside jitted code), so while that module is imported we let
    `numba.typed.Dict` be the built-in dict. Also makes an error in FFCV's loader thread reach
    the consumer (:func:`_report_loader_thread_errors`), even when ffcv was imported before.
    """
    if "ffcv.fields.rgb_image" in sys.modules and _patched:
        return
    with _lock:
        if "ffcv.fields.rgb_image" not in sys.modules:
            import numba.typed

            typed_dict = numba.typed.Dict
            numba.typed.Dict = dict
            try:
                import ffcv.fields.rgb_image  # noqa: F401
            finally:
                numba.typed.Dict = typed_dict
        _report_loader_thread_errors()


_patched = False  # set once FFCV's EpochIterator reports its thread's errors


def _report_loader_thread_errors() -> None:
    """Make an error in FFCV's loader thread reach the training loop instead of hanging it.

    FFCV's ``EpochIterator`` fills a queue from its own thread and ``__next__`` waits on that
    queue without a timeout; when a pipeline stage raises (a transform refusing its input, a
    decode failure), the thread dies and the consumer waits forever, deaf to a graceful stop.
    Here the thread's error is kept, the consumer is woken with FFCV's own end-of-epoch marker,
    and ``__next__`` raises :class:`LoaderThreadError` naming the error instead of ending the
    epoch. Nothing changes while the thread runs normally.
    """
    global _patched
    from queue import Full

    from ffcv.loader.epoch_iterator import EpochIterator

    if _patched:  # called under import_ffcv's lock
        return
    run, next_ = EpochIterator.run, EpochIterator.__next__

    def run_reporting(self) -> None:
        try:
            run(self)
        except BaseException as e:  # the thread's end: keep it for the consumer
            self._nas_error = e
            while not self.terminate_event.is_set():  # FFCV's own put loop
                try:
                    self.output_queue.put(None, block=True, timeout=0.5)
                    break
                except Full:
                    pass

    def failed(error: BaseException) -> LoaderThreadError:
        e = LoaderThreadError(f"the data loader failed: {type(error).__name__}: "
                              f"{' '.join(str(error).split())}")
        e.__cause__ = error
        return e

    def next_reporting(self):
        error = getattr(self, "_nas_error", None)
        if error is not None and not self.is_alive() and self.output_queue.empty():
            raise failed(error)  # asked again after the error: the queue will stay empty
        try:
            return next_(self)
        except StopIteration:
            error = getattr(self, "_nas_error", None)
            if error is None:
                raise
            raise failed(error) from error

    EpochIterator.run = run_reporting
    EpochIterator.__next__ = next_reporting
    _patched = True


class LoaderThreadError(RuntimeError):
    """FFCV's loader thread raised; the message names its error, chained as ``__cause__``."""
