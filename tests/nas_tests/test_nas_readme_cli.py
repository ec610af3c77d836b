"""The README's CLI reference against the parsers: every option documented, no option that does
not exist, and the search's simple defaults as the parser has them."""

from __future__ import annotations

import argparse
import re
from fractions import Fraction
from pathlib import Path

import pytest

from nas.cli import _parser

README = Path(__file__).resolve().parents[2] / "README.md"
#: an option name at the start of a word: --budget, --no-asha-late-rung, -o
OPTION = re.compile(r"(?<![\w-])(--?[a-z][a-z0-9-]*)")


def _cells(line: str) -> list[str]:
    """A Markdown table row's cells (a ``\\|`` inside a cell is not a separator)."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]


def _option_rows(text: str) -> dict[str, list[str]]:
    """Option -> the default cells of the README's option-table rows that name it first."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.startswith("| `-"):
            continue
        cells = _cells(line)
        for option in OPTION.findall(cells[0]):
            rows.setdefault(option, []).append(cells[1] if len(cells) > 1 else "")
    return rows


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = _parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _options(parser: argparse.ArgumentParser):
    for action in parser._actions:
        names = [o for o in action.option_strings if o not in ("-h", "--help")]
        if names:
            yield action, names


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


#: where each subcommand's options are documented
SECTIONS = {"search": "CLI reference", "studies": "CLI reference",
            "pareto": "Reading the results",
            "export": "Export", "dashboard": "Dashboard and report",
            "report": "Dashboard and report"}


@pytest.mark.parametrize("command", sorted(SECTIONS))
def test_every_option_of_a_subcommand_is_in_its_readme_section(command):
    rows = _option_rows(_section(README.read_text(), SECTIONS[command]))
    missing = [names for _, names in _options(_subcommands()[command])
               if not any(n in rows for n in names)]
    assert not missing, (f"`{command}` options missing from the option table of the README's "
                         f"section '{SECTIONS[command]}': {missing}")


def test_the_readme_documents_no_option_that_does_not_exist():
    known = {n for parser in _subcommands().values() for _, names in _options(parser)
             for n in names}
    stale = sorted(set(_option_rows(README.read_text())) - known)
    assert not stale, f"README option rows name options no subcommand has: {stale}"


def _as_number(text: str) -> float | None:
    try:
        return float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        return None


def test_the_search_options_defaults_in_the_readme_are_the_parsers():
    rows = _option_rows(_section(README.read_text(), "CLI reference"))
    wrong = []
    for action, names in _options(_subcommands()["search"]):
        default = action.default
        if isinstance(default, bool) or not isinstance(default, (int, float, str)):
            continue  # flags and "none": the README says on/off/none in words
        cell = next((rows[n][0] for n in names if n in rows), None)
        if cell is None:
            continue  # reported by the test above
        first = cell.strip("`").split("`")[0].split()[0] if cell.strip("`") else ""
        if isinstance(default, str):
            ok = first == default
        else:
            ok = _as_number(first) is not None and abs(_as_number(first) - default) < 1e-9
        if not ok:
            wrong.append(f"{names[0]}: parser {default!r}, README {cell!r}")
    assert not wrong, "; ".join(wrong)
