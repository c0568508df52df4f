"""The import graph of lmforge: imports only point down the layers of docs/architecture.md, and no cycles.

Every module of the package is parsed with ``ast`` (nothing is imported). Its edges are all ``import`` /
``from ... import`` statements anywhere in the file — at the top and inside functions (lazy imports), since a lazy
import that points up is as much a design break as an eager one — resolved to lmforge modules:

- ``from lmforge.a import b`` is an edge to ``lmforge.a.b`` when that is a module (a file or a package), else to
  ``lmforge.a`` (a name defined in ``a``'s file; for a package, in its ``__init__.py``); relative imports are resolved
  against the importing module;
- the root package ``lmforge/__init__.py`` is the public facade and not a node: it imports ``errors`` eagerly and
  re-exports every other name lazily through its ``_LAZY`` table (name → module). So ``from lmforge import X`` and
  ``lmforge.X`` (after ``import lmforge``) are edges to the module ``_LAZY`` names for ``X``;
- a sub-package's ``__init__.py`` is the node of the package's own name (``lmforge.io``); its imports of its own
  submodules are edges like any other, so a submodule importing a name from its package's ``__init__`` while that
  ``__init__`` imports the submodule is a cycle;
- loaders named in string tables (``"lmforge.io.hf_gpt:load_hf_gpt"``, resolved with ``importlib``) are not edges:
  they are calls down from the table's owner, which the layer rule below would accept anyway.

A cycle is a strongly connected component of more than one module. The layer of a module is that of its top-level
name under ``lmforge`` (``LAYERS``); an edge from a lower layer to a higher one fails. Imports within one layer are
allowed (``io`` uses ``embed``'s sentence config). A top-level module missing from ``LAYERS`` fails: add it there.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lmforge

ROOT = Path(lmforge.__file__).parent

# top-level name under lmforge → layer (higher may import lower, never the reverse). The same table is in
# docs/architecture.md; names listed before their module exists are the ones being built in parallel.
LAYERS: dict[str, int] = {
    # 0 ground
    "errors": 0, "fileio": 0,
    # 1 text
    "tokenizers": 1, "data": 1, "represent": 1,
    # 2 building blocks
    "nn": 2,
    # 3 models
    "models": 3,
    # 4 orchestration
    "train": 4, "generate": 4, "chat": 4, "embed": 4, "fill_mask": 4, "probe": 4, "compare": 4, "io": 4, "plot": 4,
    # 5 the user's object
    "lm": 5,
    # 6 faces
    "cli": 6, "serve": 6, "ui": 6, "__main__": 6,
}
LAYER_NAMES = ["ground", "text", "nn", "models", "orchestration", "lm", "faces"]
NO_TORCH = ("tokenizers",)  # DESIGN: tokenizers/ imports no torch
# Known cycles, each with the reason it is tolerated; the test fails when one is gone, so the entry gets removed.
ALLOWED_CYCLES: list[list[str]] = []


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules.get(name, Path()).name == "__init__.py"


def lazy_table() -> dict[str, str]:
    """The root facade's ``_LAZY`` dict literal: name → module."""
    tree = ast.parse((ROOT / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else (node.targets[0] if isinstance(node, ast.Assign)
                                                                      else None)
        if isinstance(target, ast.Name) and target.id == "_LAZY":
            return ast.literal_eval(node.value)
    raise AssertionError("lmforge/__init__.py has no _LAZY table")


def imports_of(name: str, path: Path, modules: dict[str, Path], lazy: dict[str, str]) -> tuple[set[str], set[str]]:
    """(lmforge modules ``name`` imports, third-party top-level packages it imports)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if is_package(name, modules) else name.rpartition(".")[0]
    found: set[str] = set()
    external: set[str] = set()
    imports_root = False

    def add(target: str, imported: str | None = None) -> None:
        nonlocal imports_root
        if target == "lmforge":
            if imported is None:
                imports_root = True
            elif imported in lazy:
                found.add(lazy[imported])
            elif f"lmforge.{imported}" in modules:
                found.add(f"lmforge.{imported}")
            return
        candidate = f"{target}.{imported}" if imported else target
        found.add(candidate if candidate in modules else target)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "lmforge" or alias.name.startswith("lmforge."):
                    add(alias.name)
                else:
                    external.add(alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source == "lmforge" or source.startswith("lmforge."):
                for alias in node.names:
                    add(source, alias.name)
            else:
                external.add(source.split(".")[0])
    if imports_root:  # `import lmforge` then `lmforge.X`: an edge to the module that defines X
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "lmforge":
                if node.attr in lazy:
                    found.add(lazy[node.attr])
                elif f"lmforge.{node.attr}" in modules:
                    found.add(f"lmforge.{node.attr}")
    found.discard(name)
    found.discard("lmforge")
    return found, external


def graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    modules = all_modules()
    lazy = lazy_table()
    edges, external = {}, {}
    for name, path in modules.items():
        if name == "lmforge":
            continue
        edges[name], external[name] = imports_of(name, path, modules, lazy)
    return edges, external


def top(name: str) -> str:
    return name.split(".")[1]


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_every_module_is_in_the_layer_table():
    unknown = sorted({top(name) for name in all_modules() if name != "lmforge"} - set(LAYERS))
    assert not unknown, (f"lmforge modules {unknown} are not in the layer table: add them to LAYERS in "
                         f"tests/test_import_graph.py (and to docs/architecture.md) with the layer they belong to")


def test_imports_only_point_down_the_layers():
    edges, _ = graph()
    upward = sorted(
        f"{src} ({LAYER_NAMES[LAYERS[top(src)]]}) imports {dst} ({LAYER_NAMES[LAYERS[top(dst)]]})"
        for src, targets in edges.items() for dst in targets
        if top(src) in LAYERS and top(dst) in LAYERS and LAYERS[top(dst)] > LAYERS[top(src)]
    )
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)


def test_no_import_cycles():
    edges, _ = graph()
    found = strongly_connected(edges)
    stale = [c for c in ALLOWED_CYCLES if c not in found]
    assert not stale, f"cycles {stale} are gone: remove them from ALLOWED_CYCLES"
    cycles = [c for c in found if c not in ALLOWED_CYCLES]
    assert not cycles, "modules that import each other (directly or around a loop):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


def test_tokenizers_import_no_torch():
    _, external = graph()
    offenders = sorted(name for name, pkgs in external.items() if top(name) in NO_TORCH and "torch" in pkgs)
    assert not offenders, f"{offenders} import torch; tokenizers/ must run without it"


def test_the_checker_sees_lazy_imports_cycles_and_upward_edges(tmp_path):
    """The parser on made-up sources: a lazy (in-function) import is an edge, the facade resolves through _LAZY."""
    modules = {"lmforge.nn.x": tmp_path / "x.py", "lmforge.models.y": tmp_path / "y.py",
               "lmforge.lm": tmp_path / "l.py"}
    (tmp_path / "x.py").write_text("def f():\n    from lmforge.models.y import Y\n"
                                   "    import lmforge\n    lmforge.load\n")
    found, _ = imports_of("lmforge.nn.x", tmp_path / "x.py", modules, {"load": "lmforge.lm"})
    assert found == {"lmforge.models.y", "lmforge.lm"}
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
