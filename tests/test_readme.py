"""README.md stays true and short: its commands run as written, its links resolve, its size is capped.

Every command in a fenced code block of the README is checked without running any work:

* ``python -m harness CMD ...`` (or ``.venv/bin/python -m harness ...``): ``CMD --help`` must exit
  0, and every ``--flag`` the README passes must be one that ``CMD --help`` lists;
* ``make TARGET ...``: ``make -n TARGET ...`` (a dry run) must exit 0 and print the command the
  target is for, and every ``--flag`` it hands to the harness (through ``ARGS=...``, say) must be
  one that command lists.

Leading ``VAR=value`` assignments are ignored; other lines (``mkdir``, ``sed``, file listings)
are not commands this test checks.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_BYTES = 15_000

HARNESS_PREFIXES = ("python -m harness ", ".venv/bin/python -m harness ")
# What each make target's recipe runs: `make -n TARGET` must print it.
MAKE_RUNS = {
    "reproduce": "-m harness reproduce",
    "report": "-m harness report",
    "publish": "-m harness publish",
    "test": "-m pytest",
    "bench": "-m pytest tests/benchmarks",
}
SUBCOMMANDS = {"data": ("check", "synth", "align")}

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S*\s+")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
INLINE_CODE = re.compile(r"`[^`\n]*`")


def readme_commands(text: str) -> list[str]:
    """The command lines of every fenced code block, leading ``VAR=value`` assignments removed."""
    commands = []
    for block in FENCE.findall(text):
        for line in block.splitlines():
            line = line.strip()
            while ENV_ASSIGNMENT.match(line):
                line = ENV_ASSIGNMENT.sub("", line, count=1)
            if line.startswith("make ") or line.startswith(HARNESS_PREFIXES):
                commands.append(line)
    return commands


def harness_words(tokens: list[str]) -> tuple[str, ...]:
    """``["reproduce"]`` or ``["data", "check"]``: the (sub)command of harness argument tokens."""
    words = tokens[:1]
    if words and words[0] in SUBCOMMANDS and len(tokens) > 1 and tokens[1] in SUBCOMMANDS[words[0]]:
        words.append(tokens[1])
    return tuple(words)


def flags(tokens: list[str]) -> list[str]:
    """Every ``--flag`` among the tokens (``--set=k=v`` gives ``--set``)."""
    return [t.split("=", 1)[0] for t in tokens if t.startswith("--")]


@lru_cache(maxsize=None)
def harness_help(words: tuple[str, ...]) -> str:
    """``python -m harness WORDS --help``; fails the test unless it exits 0."""
    proc = subprocess.run([sys.executable, "-m", "harness", *words, "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"python -m harness {' '.join(words)} --help exited {proc.returncode}:\n{proc.stderr}"
    return proc.stdout


def check_harness_tokens(tokens: list[str], where: str) -> None:
    """The (sub)command's ``--help`` runs, and lists every flag the tokens pass."""
    words = harness_words(tokens)
    assert words, f"{where}: no harness command"
    text = harness_help(words)
    unknown = [f for f in flags(tokens) if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text)]
    assert not unknown, f"{where}: python -m harness {' '.join(words)} has no flag(s) {unknown}"


def harness_invocations(shell_text: str) -> list[list[str]]:
    """The argument tokens after ``-m harness`` of every command in ``make -n`` output."""
    found = []
    for segment in re.split(r";|&&|\|\||\n", shell_text.replace("\\\n", " ")):
        _, sep, rest = segment.partition("-m harness ")
        if not sep:
            continue
        try:
            found.append(shlex.split(rest))
        except ValueError:
            found.append(rest.split())
    return found


COMMANDS = readme_commands(README.read_text(encoding="utf-8"))


def test_readme_has_the_quick_start_commands():
    assert "make reproduce TABLE=apvit_tab5" in COMMANDS
    assert "make test" in COMMANDS


def test_readme_is_short():
    size = len(README.read_bytes())
    assert size <= MAX_BYTES, f"README.md is {size} bytes; the limit is {MAX_BYTES}: move depth into docs/"


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs_as_written(command: str):
    tokens = shlex.split(command, comments=True)
    if tokens[0] == "make":
        if shutil.which("make") is None:
            pytest.skip("make is not installed")
        proc = subprocess.run(["make", "-n", *tokens[1:]], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"make -n {shlex.join(tokens[1:])} exited {proc.returncode}:\n{proc.stderr}"
        targets = [t for t in tokens[1:] if not t.startswith("-") and "=" not in t]
        assert len(targets) == 1 and targets[0] in MAKE_RUNS, f"{command}: expected one of the targets {list(MAKE_RUNS)}"
        assert MAKE_RUNS[targets[0]] in proc.stdout, f"make -n {targets[0]} does not run {MAKE_RUNS[targets[0]]!r}"
        for invocation in harness_invocations(proc.stdout):
            check_harness_tokens(invocation, f"{command} (through make)")
    else:
        check_harness_tokens(tokens[tokens.index("harness") + 1:], command)


def test_readme_single_column_recipe_makes_a_valid_spec(tmp_path: Path):
    """The README's shell lines that copy a spec without its AffectNet column give a valid spec
    whose only column is RAF-DB (run in a scratch folder that sees the repository's tables)."""
    from harness.specs import load_spec

    lines = [line.strip() for block in FENCE.findall(README.read_text(encoding="utf-8"))
             for line in block.splitlines() if line.strip().startswith(("mkdir ", "sed "))]
    if not lines or shutil.which("sed") is None:
        pytest.skip("no spec-copying lines in the README, or no sed")
    (tmp_path / "tables").symlink_to(ROOT / "tables")
    for line in lines:
        proc = subprocess.run(["bash", "-c", line], cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, f"{line}: exited {proc.returncode}: {proc.stderr}"
    written = [p for p in tmp_path.rglob("*.yaml") if "tables" not in p.relative_to(tmp_path).parts[:1]]
    assert written, "the README's lines wrote no spec"
    for path in written:
        spec = load_spec(path.stem, path.parent)
        assert [c.key for c in spec.datasets] == ["rafdb"], f"{path.name}: columns {[c.key for c in spec.datasets]}"


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {github_anchor(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)}


def relative_links(path: Path) -> list[str]:
    """Link targets of a Markdown file, outside code, that are neither URLs nor in-page anchors."""
    text = INLINE_CODE.sub("", FENCE.sub("", path.read_text(encoding="utf-8")))
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


MARKDOWN = [README, *sorted(DOCS.rglob("*.md"))] if DOCS.is_dir() else [README]


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path):
    broken = []
    for target in relative_links(page):
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve()
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.relative_to(ROOT)})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {broken}"
