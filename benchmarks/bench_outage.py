"""How long a search takes to stop when its PostgreSQL server goes away for good.

Starts a private PostgreSQL server (as the test suite does: ``initdb`` in a temp folder, on
loopback, removed afterwards), runs ``run_search.py --space tiny`` against it, stops the server
(``pg_ctl stop -m fast``) as soon as the first trial is printed, and times the search's exit
from that moment. With ``--sigint-after S`` it also sends a Ctrl-C (SIGINT) S seconds after the
stop, and times the exit from the signal. Prints one Markdown row per repeat: the exit status,
the seconds from the stop (and from the signal) to the exit, and the search's last line.

A search should stop about ``$NAS_DB_OUTAGE_S`` (``--outage``) after the server went away,
whichever of its calls met the outage first, and at once after a Ctrl-C.

Usage (from the repository root; PostgreSQL's server binaries must be installed, as
``make setup`` does)::

    .venv/bin/python benchmarks/bench_outage.py                           # default wait, 30 s
    .venv/bin/python benchmarks/bench_outage.py --sigint-after 5          # Ctrl-C in the wait
    .venv/bin/python benchmarks/bench_outage.py --outage 10 --executor ray -r 3
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.conftest import _pg_bindir, _PostgresServer  # noqa: E402 - the suite's own server


def one_run(args: argparse.Namespace, runs: Path) -> dict:
    """Start a server, search until the first trial, stop the server for good, time the exit."""
    server = _PostgresServer(_pg_bindir())
    url = server.start()
    cmd = [sys.executable, str(ROOT / "run_search.py"), "--space", "tiny", "--budget", "8",
           "--epochs", str(args.epochs), "--dataset", "digits", "--db", url, "--runs-dir",
           str(runs), "--study", "outage", "--executor", args.executor, "--progress-every", "0"]
    env = {**os.environ, "NAS_DB_OUTAGE_S": str(args.outage)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env)
    first = threading.Event()
    err: list[str] = []

    def read_out() -> None:
        for line in proc.stdout:
            if line.startswith("[  1/8]"):
                first.set()

    readers = [threading.Thread(target=read_out, daemon=True),
               threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        if not first.wait(600):
            raise SystemExit("error: the search printed no first trial in 600 s")
        server.halt()
        stopped = time.monotonic()
        signalled = None
        if args.sigint_after is not None:
            time.sleep(args.sigint_after)
            proc.send_signal(signal.SIGINT)
            signalled = time.monotonic()
        proc.wait(timeout=args.outage * 5 + 120)
        ended = time.monotonic()
        for reader in readers:
            reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
    lines = [ln.rstrip("\n") for ln in err if ln.strip()]
    return {"rc": proc.returncode, "after_stop": ended - stopped,
            "after_signal": None if signalled is None else ended - signalled,
            "line": lines[-1] if lines else ""}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=30.0,
                        help="$NAS_DB_OUTAGE_S for the search (default 30, the default wait)")
    parser.add_argument("--sigint-after", type=float, default=None, metavar="S",
                        help="send a Ctrl-C S seconds after the server stopped")
    parser.add_argument("--executor", choices=("local", "ray"), default="local")
    parser.add_argument("--epochs", type=int, default=12,
                        help="epochs a trial (12: a trial runs on through the outage)")
    parser.add_argument("-r", "--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    print(f"command: {' '.join(shlex.quote(a) for a in sys.argv)}")
    print(f"NAS_DB_OUTAGE_S={args.outage:g}, --executor {args.executor}, {args.epochs} epochs "
          f"a trial, server stopped after the first trial"
          + (f", Ctrl-C {args.sigint_after:g} s later" if args.sigint_after is not None else ""))
    print("\n| run | exit | s from the stop | s from the Ctrl-C | last line (start) |")
    print("|---|---|---|---|---|")
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="bench-outage-") as tmp:
            r = one_run(args, Path(tmp))
        sig = "" if r["after_signal"] is None else f"{r['after_signal']:.1f}"
        print(f"| {i + 1} | {r['rc']} | {r['after_stop']:.1f} | {sig} | {r['line'][:90]} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
