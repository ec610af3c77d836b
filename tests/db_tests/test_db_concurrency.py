"""Many OS processes writing one study at once, and racing for its lease (both backends)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from db import Store, StudyRecord

REPO = Path(__file__).resolve().parents[2]
PROCESSES = 8
PAIRS = int(os.environ.get("NAS_TEST_PAIRS", "80"))  # per process; 200 for the figures in notes

# argv: url, study id, tag, go-file; reports "ready" by a file, starts when go-file exists
PRELUDE = textwrap.dedent(
    """
    import os, sys, time
    from db import Store, StudyBusyError
    url, study_id, tag, go = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    store = Store(url)
    open(f"{go}.{tag}", "w").close()
    while not os.path.exists(go):
        time.sleep(0.002)
    """
)
TRIALS = PRELUDE + textwrap.dedent(
    f"""
    for i in range({PAIRS}):
        t = store.start_trial(study_id, key=f"{{tag}}-{{i}}", arch_hash="a", arch={{}},
                              params={{}})
        store.finish_trial(t.id, state="COMPLETE", accuracy=0.5, macs=1)
    store.close()
    """
)
LEASE = PRELUDE + textwrap.dedent(
    """
    try:
        run = store.begin_run(study_id, config={}, argv=[], versions={}, host="h", pid=os.getpid())
        print(f"won {run.id}")
    except StudyBusyError as e:
        print(f"busy {e.holder.id}")
    store.close()
    """
)


def _race(script: str, url: str, study: StudyRecord, n: int, tmp: Path) -> tuple[list, float]:
    """Start ``n`` processes, release them together; ``([(rc, out, err)], seconds racing)``."""
    go = tmp / "go"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    procs = [subprocess.Popen([sys.executable, "-c", script, url, str(study.id), f"p{i}",
                               str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for i in range(n)]
    try:
        deadline = time.monotonic() + 120
        while not all((tmp / f"go.p{i}").exists() for i in range(n)):
            assert time.monotonic() < deadline, "the worker processes did not start"
            assert all(p.poll() is None for p in procs), \
                [p.communicate() for p in procs if p.poll() is not None]
            time.sleep(0.01)
        t0 = time.perf_counter()
        go.touch()
        results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
        return results, time.perf_counter() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


@pytest.mark.slow  # ~5-10 s on 2 cores per backend; `make test` runs it
def test_eight_processes_write_one_study_without_gaps_or_errors(
    backend_url: str, store: Store, new_study: Callable[..., StudyRecord], tmp_path: Path
) -> None:
    study = new_study("eight")
    results, seconds = _race(TRIALS, backend_url, study, PROCESSES, tmp_path)
    errors = [(rc, err.strip().splitlines()[-1:]) for rc, _, err in results if rc != 0 or err]
    assert not errors, f"workers failed: {errors}"
    trials = store.trials(study.id)
    total = PROCESSES * PAIRS
    numbers = [t.number for t in trials]
    assert numbers == list(range(total)), \
        f"expected numbers 0..{total - 1} once each, got {len(numbers)} trials " \
        f"(missing {sorted(set(range(total)) - set(numbers))[:10]})"
    states = {t.state for t in trials}
    assert states == {"COMPLETE"}, f"expected every trial COMPLETE, got {states}"
    assert len({t.key for t in trials}) == total
    print(f"\n{backend_url.split(':')[0]}: {total} start+finish pairs from {PROCESSES} "
          f"processes in {seconds:.1f} s")


def test_two_processes_begin_a_run_at_once_and_exactly_one_wins(
    backend_url: str, store: Store, new_study: Callable[..., StudyRecord], tmp_path: Path
) -> None:
    study = new_study("lease-race")
    results, _ = _race(LEASE, backend_url, study, 2, tmp_path)
    assert all(rc == 0 and not err for rc, _, err in results), results
    outs = sorted(out.strip() for _, out, _ in results)
    runs = store.runs(study.id)
    assert len(runs) == 1 and runs[0].outcome == "running", f"expected one run, got {runs}"
    assert outs == [f"busy {runs[0].id}", f"won {runs[0].id}"], \
        f"expected one winner and one StudyBusyError naming it, got {outs}"
