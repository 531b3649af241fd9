"""The top-level command line: one command's parser is built without importing the others."""
from __future__ import annotations

import argparse

import pytest

from harness.cli import COMMANDS, build_parser, main


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def test_the_full_parser_lists_every_command() -> None:
    assert _commands(build_parser()) == set(COMMANDS)


def test_a_named_command_gets_only_its_own_parser() -> None:
    parser = build_parser("tables")
    assert _commands(parser) == {"tables"}
    assert parser.parse_args(["tables"]).command == "tables"


def test_an_unknown_command_is_refused_with_the_list(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["nonsense"])
    assert exc.value.code == 2
    assert "invalid choice: 'nonsense'" in capsys.readouterr().err
