"""The package's import graph: no cycles among its modules, and the layers and models use only the
public ``mlip.kernels`` API.

Read from the sources (no import is executed): every ``import`` statement counts, at module level or
inside a function, except those under ``if TYPE_CHECKING:``. A module's implicit import of its parent
packages is not an edge (every submodule would otherwise form a cycle with its package).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# source folder -> the package it installs as (pyproject's package-dir mapping)
SOURCES = {"mlip": "mlip", "kernels": "mlip.kernels", "datasets": "mlip.datasets", "md": "mlip.md"}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in SOURCES.items():
        base = ROOT / folder
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([package, *parts])
            if folder == "mlip" and name.split(".")[1:2] in (["kernels"], ["datasets"], ["md"]):
                continue
            out[name] = path
    return out


def _shadowing(package: str, path: Path | None) -> set[str]:
    """Names a package's ``__init__`` binds to objects of its submodules (``from .sub import name``), which
    hide a submodule of the same name from ``from package import name`` (``mlip.kernels.s2_activation``)."""
    if path is None or path.name != "__init__.py":
        return set()
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and (node.module or "") not in ("", package):
            out |= {alias.asname or alias.name for alias in node.names}
    return out


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[tuple[str, str]]:
    """``(module, imported name or "")`` pairs of ``mlip`` modules imported by module ``name``."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            out |= {(alias.name, "") for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                # a submodule, unless the package exports a name that shadows it (mlip.kernels.s2_activation)
                if sub in modules and alias.name not in _shadowing(target, modules.get(target)):
                    out.add((sub, ""))
                else:
                    out.add((target, alias.name))
    return {(m, n) for m, n in out if m in modules}


def _graph() -> dict[str, set[tuple[str, str]]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges[v]:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    graph = _graph()
    assert len(graph) > 50  # the walk found the package
    edges = {m: {t for t, _ in targets} for m, targets in graph.items()}
    assert _cycles(edges) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_layers_and_models_use_only_the_public_kernels_api():
    import mlip.kernels

    graph = _graph()
    bad = []
    for module, targets in graph.items():
        if not module.startswith(("mlip.layers", "mlip.models")):
            continue
        for target, imported in targets:
            public = target == "mlip.kernels" and imported in mlip.kernels.__all__
            if target.startswith("mlip.kernels") and not public:
                bad.append(f"{module} imports {target}{'.' + imported if imported else ''}")
    assert bad == []
