"""Every (sub)command's --help states each default once, and only a real one."""

from __future__ import annotations

import argparse
import re

import pytest

from nas.cli import main

WRITTEN = {"asha_min_epochs": "1/3", "db": "$NAS_DB_URL"}  # written otherwise than str(value)
COMMANDS = [["search"], ["spaces", "list"], ["spaces", "show"], ["spaces", "sample"],
            ["data", "list"], ["data", "prepare"], ["db", "current"], ["db", "upgrade"],
            ["studies"], ["pareto"], ["export"], ["dashboard"], ["report"]]


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
    assert "the HTML file to write (an earlier report there is replaced) (default: " \
        "report.html)" in text, text
    assert "where the default database lives (default: runs)" in text, text


def test_every_option_with_a_default_shows_it(monkeypatch, capsys) -> None:
    # and a password in $NAS_DB_URL, the --db default, never appears in --help
    from nas.cli import _parser

    monkeypatch.setenv("NAS_DB_URL", "postgresql://u:s3cret@h/db")
    parser = _parser()
    subs = parser._subparsers._group_actions[0].choices
    for argv in COMMANDS:
        p = subs[argv[0]]
        if len(argv) > 1:
            p = p._subparsers._group_actions[0].choices[argv[1]]
        with pytest.raises(SystemExit):
            p.parse_args(["--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "s3cret" not in text, argv
        for action in p._actions:
            if action.default in (None, argparse.SUPPRESS) or isinstance(action.default, bool) \
                    or action.required or not action.option_strings:
                continue
            shown = p._get_formatter()._get_help_string(action)  # before %-expansion
            value = WRITTEN.get(action.dest, str(action.default))
            assert "%(default)s" in shown or f"default {value}" in shown or \
                f"default: {value}" in shown, (argv, action.dest, shown)


@pytest.mark.parametrize("side", ["600", "4"])
def test_data_prepare_names_its_resolution_option(tmp_path, capsys, side) -> None:
    # the API's refusal says "resolution"; the command line's names the option typed
    assert main(["data", "prepare", "--dataset", "digits", "--resolution", side,
                 "--runs-dir", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err == (f"error: --resolution must be an integer in 8..512; "
                                       f"got {side}\n")
    assert not (tmp_path / "runs").exists()


def test_a_ctrl_c_while_the_parser_imports_is_one_line(monkeypatch, capsys) -> None:
    """Building the parser imports the search driver, the database layer and SQLAlchemy
    (~0.5 s): a Ctrl-C there printed a 50-line traceback of that import; now one line, 130."""
    import nas.cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(nas.cli, "_parser", interrupted)
    assert main(["export", "--preset", "x", "--out", "y"]) == 130
    assert capsys.readouterr().err == "error: interrupted before anything started\n"
