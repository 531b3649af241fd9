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


def test_tables_lists_every_valid_spec_and_names_each_invalid_one(tmp_path, monkeypatch, capsys) -> None:
    from harness.specs import TABLES_DIR

    good = (TABLES_DIR / "apvit_tab5.yaml").read_text()
    (tmp_path / "zz_good.yaml").write_text(good.replace("id: apvit_tab5", "id: zz_good"))
    (tmp_path / "aa_bomb.yaml").write_text("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n" for p, n in zip("abcdefg", "bcdefgh")))
    (tmp_path / "mm_broken.yaml").write_text("id: mm_broken\ncaption: [unclosed\n")
    monkeypatch.setenv("FERBENCH_TABLES", str(tmp_path))
    assert main(["tables"]) == 2
    out, err = capsys.readouterr()
    assert "zz_good " in out and "APViT Table 5" in out
    assert "aa_bomb  " in out and "mm_broken " in out and "INVALID" in out
    assert f"{tmp_path / 'aa_bomb.yaml'}: expands to more than" in err
    assert f"{tmp_path / 'mm_broken.yaml'}: not valid YAML" in err
    assert "2 invalid table spec(s)" in err and "aa_bomb, mm_broken" in err


def test_tables_exits_zero_when_every_spec_is_valid(capsys) -> None:
    assert main(["tables"]) == 0
    assert "apvit_tab5" in capsys.readouterr().out


@pytest.mark.parametrize("argv, messages", [
    (["flops", "apvit", "--preset", "tiny", "--input-size", "7"],
     ["--input-size 7: must be at least 8", "apvit (tiny) is built for 48x48"]),
    (["flops", "apvit", "--preset", "tiny", "--input-size", "0"], ["--input-size 0: must be at least 8"]),
    (["flops", "mae_vit_tiny", "--preset", "tiny", "--input-size", "40"],  # timm's assert on the input size
     ["cannot trace at input size 40", "mae_vit_tiny (tiny) is built for 48x48"]),
])
def test_flops_refuses_an_input_size_the_model_cannot_take(capsys, argv, messages) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert all(m in err for m in messages), err
