"""The code version hashes what the training path computes: comments, docstrings and moves keep it."""
import re
import shutil
from pathlib import Path

import pytest

from harness.run.cells import Cell
from harness.run.codeversion import (ROOT, RUNNER_MODULE, module_file, normalised_statements, source_version,
                                     training_path)


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """A copy of the project's code (harness/ and methods/) to edit."""
    for pkg in ("harness", "methods"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _version(root: Path, module: str = "methods.apvit") -> str:
    return source_version((RUNNER_MODULE, module), root)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def _cell(code_version: str) -> Cell:
    return Cell(method="apvit", model={}, train={}, data={}, dataset="rafdb", protocol=None, scale="tiny", seed=0,
                fingerprint="f", code_version=code_version, synthetic=True, data_root="/d")


def test_the_copy_has_the_projects_version(tree):
    assert _version(tree) == _version(ROOT)


def test_comments_docstrings_and_layout_keep_the_version(tree):
    before = _version(tree)
    runner = module_file(RUNNER_MODULE, tree)
    text = runner.read_text()
    doc = text.index('"""', text.index("def train_cell("))
    runner.write_text(text[:doc + 3] + "Reworded. " + text[doc + 3:] + "\n# a new comment\n")
    _edit(tree / "methods" / "layers" / "pooling.py", "\n\n", "\n\n\n")  # blank lines
    _edit(tree / "methods" / "apvit.py", "import math\n", "import math  # why: ceil of keep counts\n")
    after = _version(tree)
    assert after == before
    assert _cell(after).id == _cell(before).id


def test_moving_a_training_path_file_keeps_the_version(tree):
    before = _version(tree)
    flops = next(m for m in training_path((RUNNER_MODULE,), tree) if m.endswith(".flops"))
    (tree / "harness" / "elsewhere").mkdir()
    (tree / "harness" / "elsewhere" / "__init__.py").write_text('"""Moved here."""\n')
    shutil.move(module_file(flops, tree), tree / "harness" / "elsewhere" / "flops_count.py")
    for path in tree.rglob("*.py"):
        text = path.read_text()
        new = re.sub(rf"^(\s*from) {re.escape(flops)} import", r"\1 harness.elsewhere.flops_count import", text,
                     flags=re.M)
        if new != text:
            path.write_text(new)
    assert "harness.elsewhere.flops_count" in training_path((RUNNER_MODULE,), tree)
    assert flops not in training_path((RUNNER_MODULE,), tree)
    assert _version(tree) == before


def test_a_changed_constant_makes_results_stale(tree):
    before = _version(tree)
    losses = tree / "methods" / "losses.py"
    number = re.search(r"(?<![\w.])(\d+\.\d+)(?![\w.])", losses.read_text().split('"""', 2)[2])
    assert number, "methods/losses.py has no float constant to change"
    text = losses.read_text()
    at = text.index(number.group(1), len(text.split('"""', 2)[0]) + 3 + len(text.split('"""', 2)[1]) + 3)
    losses.write_text(text[:at] + number.group(1) + "1" + text[at + len(number.group(1)):])
    assert _version(tree) != before
    assert _cell(_version(tree)).id != _cell(before).id


def test_a_family_edit_leaves_other_families_alone(tree):
    apvit, mae = _version(tree, "methods.apvit"), _version(tree, "methods.mae")
    _edit(tree / "methods" / "mae.py", "_TINY_AFFECTNET_SAMPLER = \"sqrt\"", "_TINY_AFFECTNET_SAMPLER = \"heavy\"")
    assert _version(tree, "methods.mae") != mae
    assert _version(tree, "methods.apvit") == apvit


def test_the_path_follows_imports_not_folders():
    path = training_path((RUNNER_MODULE, "methods.apvit"), ROOT)
    assert {RUNNER_MODULE, "harness.data.transforms", "methods.layers.vit", "methods.losses"} <= set(path)
    assert not {"methods.mae", "methods.pfvit", "harness.report.build", "harness.stats", "harness.run.plan"} & set(path)


def test_statements_drop_docstrings_and_project_imports_only():
    a = normalised_statements('"""Doc."""\nimport torch\nfrom harness.x import y\n\ndef f():\n    """D."""\n'
                              '    from methods import z\n    return torch.ones(2)\n')
    b = normalised_statements('import torch\nfrom harness.elsewhere import y\ndef f():\n    return torch.ones(2)\n')
    c = normalised_statements('import numpy\ndef f():\n    return torch.ones(3)\n')
    assert a == b
    assert a[0] != c[0] and a[1] != c[1]


def test_splitting_a_file_keeps_the_version(tree):
    """Half of a module moves to a new file whose header repeats imports the path already has."""
    before = _version(tree)
    layers = tree / "methods" / "layers"
    text = (layers / "pooling.py").read_text()
    cut = text.index("\ndef ", len(text) // 2)
    header = text[: text.index("\ndef ")]  # docstring and imports
    (layers / "pooling_more.py").write_text(header + text[cut:])
    (layers / "pooling.py").write_text(text[:cut] + "\nfrom methods.layers.pooling_more import *  # noqa\n")
    assert "methods.layers.pooling_more" in training_path((RUNNER_MODULE, "methods.apvit"), tree)
    assert _version(tree) == before


def test_run_tracking_is_not_part_of_the_version(tree):
    before = _version(tree)
    runner = module_file(RUNNER_MODULE, tree)
    text = runner.read_text()
    untracked = re.sub(r"^\s*(track[.= ].*|from harness\.run import tracking)\n", "", text, flags=re.M)
    assert untracked.count("\n") < text.count("\n") - 3  # the runner opens, feeds and finishes a tracker
    runner.write_text(untracked)
    (tree / "harness" / "run" / "tracking.py").write_text("LOGGED = 'anything else'\n")  # never followed
    assert _version(tree) == before
    runner.write_text(untracked + "\ntracked = 0\n")  # only the name `track` is the tracker's
    assert _version(tree) != before
