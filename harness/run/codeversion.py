"""A cell's code version: a hash of what its training path computes, not of the bytes that spell it.

The training path of a method is every module of the project reached by imports (at any depth,
function-level imports included) from the runner and from the module that registers the method's
model, plus the ``__init__`` of every package on the way (Python runs them). Nothing keeps a list
of folders: an import the runner gains joins the path, one it loses leaves it.

Each module is parsed, and what the hash sees is normalised:

* docstrings are dropped (comments and formatting never reach the syntax tree);
* imports of project modules are dropped: the imported code is hashed on its own, so a module's
  name or location is not part of the version;
* the other top-level statements of every module on the path are hashed as one sorted multiset,
  and the names imported from outside the project (``torch``, ``timm.layers.Mlp``, ...) as one set
  of ``(module, name, alias)``, so moving a function or class to another file, or splitting a
  file (whose new header repeats imports the path already has), keeps the version.

So a comment, a docstring, a reformat, a moved or renamed file keeps every stored result valid,
while any change to a statement of the training path (a constant, an operator, a default) makes
the results of the methods whose path holds it stale. A module-level ``__file__``-relative path
would tie meaning to location: the training path has none.

A method plugin's family (an installed package announced in ``methods.PLUGIN_GROUP``) is on the
path with its own package's modules, read from where the package is installed.

Run tracking (:mod:`harness.run.tracking`) observes training and never changes it, so it is not
on the path: its module is not followed, and a statement that only talks to the tracker is
dropped, namely an assignment to the name ``track`` and an expression statement calling a method
of ``track`` (``track.epoch(...)``). Adding, moving or removing tracking keeps every result valid;
the name ``track`` is reserved for the tracker on the training path.
"""
from __future__ import annotations

import ast
import importlib.util
import hashlib
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNNER_MODULE = "harness.run.train.runner"
PROJECT_PACKAGES = ("harness", "methods")
OBSERVERS = ("harness.run.tracking",)  # modules that watch training without changing it
TRACKER = "track"  # the name the training path gives its tracker


def module_file(name: str, root: Path | tuple[Path, ...]) -> Path | None:
    """The file of module ``name`` (``a.b`` -> ``a/b.py`` or ``a/b/__init__.py``) under ``root``
    (or the first of several roots that has it)."""
    for r in (root,) if isinstance(root, Path) else root:
        base = r.joinpath(*name.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module name of a (possibly relative) ``from ... import``."""
    if not node.level:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every module name an ``import`` anywhere in ``tree`` may load (``from a import b`` gives ``a``
    and ``a.b``, since ``b`` may be a submodule)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, module, is_package)
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
    return names


def _is_project(name: str, packages: tuple[str, ...]) -> bool:
    return name.split(".")[0] in packages


class _Normalise(ast.NodeTransformer):
    """Drop docstrings, imports of project modules and statements on the tracker from a module's
    syntax tree."""

    def __init__(self, module: str, is_package: bool, packages: tuple[str, ...]) -> None:
        self.module, self.is_package, self.packages = module, is_package, packages

    def _drop_docstring(self, node: ast.AST) -> ast.AST:
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:]
        return self.generic_visit(node)

    visit_Module = visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _drop_docstring

    def visit_Import(self, node: ast.Import) -> ast.Import | None:
        return None if all(_is_project(a.name, self.packages) for a in node.names) else node

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.ImportFrom | None:
        return None if _is_project(_resolve(node, self.module, self.is_package), self.packages) else node

    def visit_Assign(self, node: ast.Assign) -> ast.Assign | None:
        targets = node.targets
        return None if len(targets) == 1 and isinstance(targets[0], ast.Name) and targets[0].id == TRACKER \
            else self.generic_visit(node)

    def visit_Expr(self, node: ast.Expr) -> ast.Expr | None:
        call = node.value
        on_tracker = isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) \
            and isinstance(call.func.value, ast.Name) and call.func.value.id == TRACKER
        return None if on_tracker else self.generic_visit(node)


def normalised_statements(source: str, module: str = "", is_package: bool = False,
                          packages: tuple[str, ...] = PROJECT_PACKAGES) -> tuple[list[str], set[str]]:
    """``(statements, imports)`` of ``source``: its top-level statements but imports as normalised
    syntax-tree dumps, and each name its top-level imports take from outside the project as
    ``"module:name:alias"`` (see the module doc)."""
    tree = _Normalise(module, is_package, packages).visit(ast.parse(source))
    statements, imports = [], set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            imports.update(f"{a.name}::{a.asname or ''}" for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            imports.update(f"{'.' * node.level}{node.module or ''}:{a.name}:{a.asname or ''}" for a in node.names)
        else:
            statements.append(ast.dump(node, include_attributes=False))
    return statements, imports


def training_path(roots: tuple[str, ...], root: Path | tuple[Path, ...], packages: tuple[str, ...] = PROJECT_PACKAGES
                  ) -> dict[str, Path]:
    """Module name -> file of every project module reached by imports from ``roots``, with the
    packages that contain them."""
    found: dict[str, Path] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in found or not _is_project(name, packages) or name in OBSERVERS:
            continue
        path = module_file(name, root)
        if path is None:
            continue  # ``from pkg import name`` where ``name`` is not a module
        found[name] = path
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += _imports_of(path.read_text(), name, path.name == "__init__.py")
    return found


# Keyed by the source text: every method's training path shares most files, parsed once per process.
@lru_cache(maxsize=512)
def _imports_of(source: str, module: str, is_package: bool) -> tuple[str, ...]:
    return tuple(sorted(imported_modules(ast.parse(source), module, is_package)))


@lru_cache(maxsize=512)
def _statements_of(source: str, module: str, is_package: bool, packages: tuple[str, ...]) -> tuple[list[str], set[str]]:
    return normalised_statements(source, module, is_package, packages)


def source_version(roots: tuple[str, ...], root: Path | tuple[Path, ...] = ROOT,
                   packages: tuple[str, ...] = PROJECT_PACKAGES) -> str:
    """16 hex digits of the SHA-256 of the normalised training path reached from ``roots``."""
    statements: list[str] = []
    imports: set[str] = set()
    for name, path in training_path(roots, root, packages).items():
        body, names = _statements_of(path.read_text(), name, path.name == "__init__.py", packages)
        statements += body
        imports |= names
    h = hashlib.sha256()
    for s in sorted(imports) + ["\0"] + sorted(statements):
        h.update(s.encode() + b"\0")
    return h.hexdigest()[:16]


def model_module(method: str) -> str:
    """The module that registers the timm model ``method``."""
    import timm

    import methods  # noqa: F401  (registers the FER models with timm)

    return timm.models.model_entrypoint(method).__module__


@lru_cache(maxsize=None)
def code_version(method: str) -> str:
    """The code version of ``method``'s cells: :func:`source_version` of the runner and the
    method's module (see the module docstring for what keeps it and what changes it)."""
    module = model_module(method)
    package = module.split(".")[0]
    if package in PROJECT_PACKAGES:
        return source_version((RUNNER_MODULE, module))
    # A plugin family (methods.PLUGIN_GROUP): its own package is on the path too, read where it is installed.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"model {method!r}: its family {module} is not in an importable package")
    installed = Path(next(iter(spec.submodule_search_locations))).parent
    return source_version((RUNNER_MODULE, module), (ROOT, installed), (*PROJECT_PACKAGES, package))
