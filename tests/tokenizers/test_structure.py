"""The shape of ``lmforge.tokenizers``, checked on its source (ast): no import cycle between its modules (imports
inside functions count too), no ``obj._private`` attribute reached from another module, no private name imported
from a sibling, and no torch."""

from __future__ import annotations

import ast
from pathlib import Path

import lmforge.tokenizers

PACKAGE = "lmforge.tokenizers"
ROOT = Path(lmforge.tokenizers.__file__).parent


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join((PACKAGE, *parts)).removesuffix(".__init__")
        out[name] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return out


def _imports(tree: ast.Module, modules: set[str]) -> set[str]:
    """The package's modules this one imports (``from pkg import mod`` counts as importing ``pkg.mod``)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                if sub in modules:
                    found.add(sub)
                elif node.module in modules:
                    found.add(node.module)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as a path of module names, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def _private_uses(tree: ast.Module) -> list[str]:
    """``x._name`` where ``x`` is not ``self`` / ``cls`` (dunders are fine), and ``from sibling import _name``."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                out.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
            out.extend(f"line {node.lineno}: from {node.module} import {a.name}" for a in node.names
                       if a.name.startswith("_"))
    return out


def test_no_import_cycle_inside_the_package():
    modules = _modules()
    graph = {m: _imports(tree, set(modules)) - {m} for m, tree in modules.items()}
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_no_private_attribute_reached_across_modules():
    found = {m: _private_uses(tree) for m, tree in _modules().items()}
    assert {m: uses for m, uses in found.items() if uses} == {}


def test_the_checks_catch_what_they_guard():
    """A planted cycle and a planted private access are found (so a passing run means something)."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    tree = ast.parse("def f(tok):\n    import lmforge.tokenizers.fast\n    return tok._cache, self._ok, x.__len__\n")
    assert _private_uses(tree) == ["line 3: tok._cache"]
    assert _private_uses(ast.parse("from lmforge.tokenizers.bpe import _helper")) == [
        "line 1: from lmforge.tokenizers.bpe import _helper"]
    assert _imports(ast.parse("from lmforge.tokenizers import fast"), {"lmforge.tokenizers.fast"}) == {
        "lmforge.tokenizers.fast"}


def test_imports_no_torch():
    for m, tree in _modules().items():
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not {n for n in names if n == "torch" or n.startswith("torch.")}, m
