"""The house: the import graph of ``harness/`` and ``methods/`` flows one way."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from harness.run.codeversion import ROOT, imported_modules, module_file


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in ("harness", "methods"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """Project modules ``name`` imports (at any depth), resolved to modules that exist."""
    path = MODULES[name]
    found = imported_modules(ast.parse(path.read_text()), name, path.name == "__init__.py")
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name) for name in MODULES}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_real():
    assert "harness.run.train.runner" in GRAPH["harness.run.workqueue"]
    assert "methods.layers.vit" in GRAPH["methods.mae"]


def test_no_import_cycle():
    assert _cycles() == []


@pytest.mark.parametrize("package, forbidden", [
    # the report reads the pictures' files; harness.pictures builds models, so the report may not import it
    ("harness.report", ("harness.measure", "harness.run.train", "harness.pictures")),
    ("harness.pictures", ("harness.report", "harness.stats", "harness.measure", "harness.commands",
                          "harness.run.train")),
    ("harness.stats", ("harness.run", "harness.measure", "harness.report", "harness.commands")),
    ("harness.measure", ("harness.commands",)),
    ("harness.run", ("harness.report", "harness.stats", "harness.measure", "harness.commands")),
    ("harness.data", ("harness.run", "harness.report", "harness.stats", "harness.measure", "harness.commands")),
    ("methods", ("harness",)),
])
def test_data_flows_one_way(package, forbidden):
    bad = {m: sorted(i for i in GRAPH[m] if i.startswith(forbidden))
           for m in MODULES if m == package or m.startswith(package + ".")}
    assert {m: v for m, v in bad.items() if v} == {}


def test_a_family_imports_no_other_family():
    families = {m for m in MODULES if m.startswith("methods.") and m.count(".") == 1
                and m not in ("methods.interface", "methods.losses", "methods.pretrained")}
    bad = {f: sorted(GRAPH[f] & families) for f in families if GRAPH[f] & families}
    assert bad == {}


_BLOCKED = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "timm", "methods", "pandas"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import harness.run.cells, harness.run.weights, harness.run.codeversion
cell = harness.run.cells.Cell(method="apvit", model={}, train={}, data={}, dataset="rafdb", protocol=None,
                              scale="tiny", seed=0, fingerprint="f", code_version="v", synthetic=True, data_root="/d")
print(cell.id)
"""


def test_cells_import_without_torch():
    out = subprocess.run([sys.executable, "-c", _BLOCKED], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip()) == 16


def test_module_file_finds_packages_and_modules():
    assert module_file("harness.run", ROOT) == ROOT / "harness" / "run" / "__init__.py"
    assert module_file("harness.run.cells", ROOT) == ROOT / "harness" / "run" / "cells.py"
    assert module_file("harness.nothing_here", ROOT) is None
