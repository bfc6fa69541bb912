"""The import graph of ``bert_vits2`` and ``motion``: no cycles, and ``bert_vits2`` never imports ``motion``.

Every module is parsed with :mod:`ast` (nothing is imported). Edges come from every ``import`` / ``from ... import``
statement wherever it stands (module level, inside functions, classes, ``try`` blocks) and from
``importlib.import_module("literal")`` calls; ``from pkg import name`` points at ``pkg.name`` when that is a module,
else at ``pkg``. Imports under ``if TYPE_CHECKING:`` are left out: they never run. Dynamic imports built from
non-literal strings (``motion.face.__init__``'s lazy names, the text frontend's language modules) are not seen.
A cycle, even one closed only by a function-level import, means two modules know each other: one of them belongs lower.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bert_vits2", "motion")

# Known cycles still being removed, as unordered pairs of modules whose edges are ignored. Keep it empty: an entry is
# allowed only while its fix is in flight.
ALLOWED_CYCLES: set[frozenset[str]] = set()


def module_files(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> source file, for every ``.py`` under the packages (``pkg/__init__.py`` -> ``pkg``)."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Import nodes and literal ``import_module`` calls anywhere in ``tree``, skipping ``if TYPE_CHECKING:`` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__"):
                yield node
        stack.extend(ast.iter_child_nodes(node))


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([target] if target else []))


def import_edges(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the imported names (internal ones resolved to modules of ``modules``; external ones kept as written)."""
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets: set[str] = set()
        is_package = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve_relative(module, is_package, node.level, node.module) if node.level else node.module
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else base)
            else:
                targets.add(node.args[0].value)
        resolved = set()
        for target in targets:
            # ``import a.b.c`` where only ``a.b`` is ours (an attribute import): the nearest enclosing module
            name = target
            while name not in modules and "." in name:
                name = name.rsplit(".", 1)[0]
            resolved.add(name if name in modules else target)
        resolved.discard(module)
        graph[module] = resolved
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One concrete cycle (``[a, b, ..., a]``) per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0

    def connect(v: str) -> None:  # recursion depth <= number of modules (~150)
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                connect(w)
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
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_cycle_in(component, graph) for component in components]


def _cycle_in(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through the component's first module, staying inside the component (breadth-first)."""
    members, start = set(component), component[0]
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start] + path[::-1][1:] + [start] if len(path) > 1 else [start, v, start]
                if w not in parents:
                    parents[w] = v
                    nxt.append(w)
        frontier = nxt
    return component  # pragma: no cover - a strongly connected component always has a cycle


def _without_allowed(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {v: {w for w in targets if frozenset({v, w}) not in ALLOWED_CYCLES} for v, targets in graph.items()}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_edges(module_files())


def test_the_graph_is_really_read(graph):
    # Guards the checks below against passing on an empty or mis-resolved graph.
    assert len(graph) > 60, sorted(graph)
    assert "bert_vits2.checkpoint" in graph["bert_vits2.train"]  # a module-level import
    assert "motion.livelink.take" in graph["motion.face.prepare"]  # a function-level import
    assert "bert_vits2.text.symbols" in graph["bert_vits2.text"]  # ``from . import symbols`` style resolved


def test_no_import_cycles(graph):
    cycles = find_cycles(_without_allowed(graph))
    assert not cycles, "import cycles (move the shared part to a lower module):\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles)


def test_bert_vits2_never_imports_motion(graph):
    bad = sorted(f"{module} -> {target}" for module, targets in graph.items() if module.startswith("bert_vits2")
                 for target in targets if target == "motion" or target.startswith("motion."))
    assert not bad, "bert_vits2 must not import motion: " + ", ".join(bad)


def test_cycle_finder_reports_a_cycle_closed_by_a_function_level_import(tmp_path):
    # The checker itself can fail: a tiny package whose cycle is closed inside a function, and a TYPE_CHECKING import
    # (which never runs) that must not count.
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from pkg.c import g\n    return g\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import b\n"
                              "def g():\n    import pkg.a\n")
    (pkg / "d.py").write_text("from .a import x\nfrom . import c\n")
    graph = import_edges(module_files(tmp_path, ("pkg",)))
    assert graph["pkg.c"] == {"typing", "pkg.a"}
    assert graph["pkg.d"] == {"pkg.a", "pkg.c"}
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
