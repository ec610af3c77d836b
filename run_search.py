#!/usr/bin/env python
"""Search a MetaFormer design space: an alias of ``python -m nas search``.

Usage:
    python run_search.py --space hybrid_conv_attn --budget 200
    python run_search.py --space tiny --budget 3 --epochs 1 --db sqlite:///runs/smoke.db
"""

import sys

from nas.cli import search_main

if __name__ == "__main__":
    sys.exit(search_main())
