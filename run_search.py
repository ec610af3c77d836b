#!/usr/bin/env python
"""Search a MetaFormer design space: an alias of ``python -m nas search``.

Usage:
    python run_search.py --space hybrid_conv_attn --budget 200
    python run_search.py --space tiny --budget 3 --epochs 1 --db sqlite:///runs/smoke.db
"""

import sys

try:
    from nas._exit import leave
    from nas.cli import search_main
except KeyboardInterrupt:  # a Ctrl-C while the package is imported: one line, as later
    print("error: interrupted before anything started", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    leave(search_main())  # sys.exit without Python's ~1.5 s module teardown
