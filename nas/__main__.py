"""``python -m nas spaces list|show|sample`` and ``python -m nas search ...``."""

import sys

from nas.cli import main

sys.exit(main())
