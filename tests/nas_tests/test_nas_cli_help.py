"""Every (sub)command's --help states each default once, and only a real one."""

from __future__ import annotations

import re

import pytest

from nas.cli import main

COMMANDS = [["search"], ["spaces", "list"], ["spaces", "show"], ["spaces", "sample"],
            ["data", "list"], ["data", "prepare"], ["db", "current"], ["db", "upgrade"],
            ["pareto"], ["export"], ["dashboard"], ["report"]]


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_help_states_each_default_once(argv, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for bad in ("(default: None)", "(default: True)", "(default: False)", "0.3333"):
        assert bad not in text, f"{argv}: {bad} in {text}"
    options = re.split(r" (?=--?[a-z][a-z-]* [A-Z{]|--?[a-z][a-z-]*(?:,| ))", text)
    for opt in options:
        assert len(re.findall(r"\bdefault\b(?! database)", opt)) <= 1, f"{argv}: {opt}"


def test_help_shows_the_defaults_it_did_not_state_itself(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "the HTML file to write (default: report.html)" in text, text
    assert "where the default database lives (default: runs)" in text, text
