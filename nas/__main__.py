"""``python -m nas {search,spaces} ...`` (``python -m nas --help`` lists the subcommands)."""

import signal
import sys

try:
    from nas._exit import leave
    from nas.cli import main
except KeyboardInterrupt:  # a Ctrl-C while the package is imported: one line, as later
    print("error: interrupted before anything started", file=sys.stderr)
    sys.exit(130)

code = main()
if sys.argv[1:2] in (["export"], ["report"], ["pareto"]):
    # Its files are whole and its last line is printed: a Ctrl-C while Python shuts down (torch's
    # exit handlers) would only print a KeyboardInterrupt traceback after it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
leave(code)  # sys.exit without Python's ~1.5 s module teardown
