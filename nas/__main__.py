"""``python -m nas {search,spaces} ...`` (``python -m nas --help`` lists the subcommands)."""

import sys

from nas.cli import main

sys.exit(main())
