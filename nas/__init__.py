"""The NAS engine (top layer): ``python -m nas``, the search driver and, below it, the model
library ``nas.models`` (a leaf that imports neither Ray, Optuna nor the database)."""

# first, so that its atexit handler runs after every other one (see nas/_exit.py)
from nas import _exit as _exit  # noqa: E402
