"""``python -m nas {search,spaces} ...`` (``python -m nas --help`` lists the subcommands)."""

import signal
import sys

from nas.cli import main

code = main()
if sys.argv[1:2] in (["export"], ["report"], ["pareto"]):
    # Its files are whole and its last line is printed: a Ctrl-C while Python shuts down (torch's
    # exit handlers) would only print a KeyboardInterrupt traceback after it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
sys.exit(code)
