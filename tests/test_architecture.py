"""The import contracts in pyproject.toml ([tool.importlinter]) hold: imports only point down."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, f"import contracts broken:\n{r.stdout[-4000:]}{r.stderr[-2000:]}"
    assert "broken" in r.stdout and " 0 broken" in r.stdout, r.stdout[-2000:]


def test_function_level_imports_are_counted():
    """The engine imports search_spaces inside a function; the graph must still see it."""
    import grimp

    graph = grimp.build_graph("nas", "search_spaces", "db", "proxies", "nas_errors")
    assert graph.direct_import_exists(importer="nas.search", imported="search_spaces"), (
        "grimp should count nas.search's function-level `from search_spaces import load_space`"
    )
