"""The NAS engine (top layer): ``python -m nas``, the search driver and, below it, the model
library ``nas.models`` (a leaf that imports neither Ray, Optuna nor the database)."""
