"""The import graph of the genzoo package, read from the source (never by importing it).

Every `import` statement counts, at module level or inside a function (a lazy import still runs when its
function does), so the closure of a module is every genzoo file that can run when it runs. A module also
depends on the packages above it (`genzoo.models.vae` runs `genzoo/models/__init__.py` first).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

PACKAGE = "genzoo"


def source_root() -> Path:
    """src/, the folder holding the genzoo package."""
    return Path(__file__).resolve().parents[2]


def module_path(module: str, root: Path | None = None) -> Path | None:
    """genzoo.models.vae -> <root>/genzoo/models/vae.py (or a package's __init__.py); None if no such file."""
    base = (root or source_root()).joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def all_modules(root: Path | None = None) -> list[str]:
    root = root or source_root()
    modules = []
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@lru_cache(maxsize=None)
def imports(module: str, root: Path | None = None, top_level_only: bool = False) -> frozenset[str]:
    """The genzoo modules `module` imports (each with the packages above it)."""
    path = module_path(module, root)
    if path is None:
        raise FileNotFoundError(f"no source file for module {module}")
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else ast.walk(tree)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x / from .y import z
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:  # `from pkg import submodule` imports the submodule too
                sub = f"{base}.{alias.name}"
                found.add(sub if module_path(sub, root) is not None else base)
    ours = {name for name in found if name == PACKAGE or name.startswith(PACKAGE + ".")}
    ours = {name for name in ours if module_path(name, root) is not None}
    return frozenset(ours | {parent for name in ours for parent in _parents(name)} | set(_parents(module)))


def closure(modules: Iterable[str], root: Path | None = None, top_level: Iterable[str] = ()) -> list[str]:
    """Every genzoo module that can run when `modules` run (themselves included). Modules in `top_level` count
    only their module-level imports (the CLI, whose commands import their own stage when called)."""
    shallow = set(top_level)
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(imports(name, root, top_level_only=name in shallow) - seen)
    return sorted(seen)


def cycles(root: Path | None = None) -> list[list[str]]:
    """Import cycles: the strongly connected components of more than one module (Tarjan), each sorted."""
    graph = {name: sorted(imports(name, root) - {name}) for name in all_modules(root)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # recursion depth is bounded by the package's size (~100 modules)
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, []):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for name in graph:
        if name not in index:
            visit(name)
    return sorted(found)


def files(modules: Iterable[str], root: Path | None = None) -> list[str]:
    """Module names -> their source files relative to the repository root (src/genzoo/...), sorted."""
    base = root or source_root()
    return sorted(module_path(m, root).relative_to(base.parent).as_posix() for m in modules)
