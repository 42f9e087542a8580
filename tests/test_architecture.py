"""The import contract of docs/architecture.md, read from the source with ``ast`` (nothing is imported or run).

1. Layers: a module imports only from its own layer or the layers below it (lazy imports inside functions and
   ``TYPE_CHECKING`` imports count too: they are dependencies all the same).
2. No private module or name of another package: shared helpers are public functions of their package.
3. No import cycle between modules, lazy imports included (a function-level import hides a cycle from Python,
   not from the design); only ``TYPE_CHECKING`` imports, which never run, are left out.
4. Every package's ``__all__`` names only public, existing, documented objects.
5. Optional libraries stay where they belong: matplotlib only in ``report/``; torch at module level only in
   ``torch/`` and ``integrations/``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import import_torchvision

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / "reluscope"

# Top to bottom, as in docs/architecture.md. Each entry is one layer; a module's layer is that of the first name
# after ``reluscope.`` ("" is the package's own __init__, with _validate and _npz the shared base).
LAYERS: list[set[str]] = [
    {"cli"},
    {"integrations"},
    {"report"},
    {"experiments", "continual"},  # studies: sweeps, comparisons, the continual-learning benchmark
    {"runs"},
    {"explain"},
    {"torch"},
    {"remedies"},
    {"diagnose"},
    {"train"},
    {"io"},
    {"nn"},
    {"data"},
    {"", "_validate", "_npz", "_version", "_cluster"},  # shared base: argument checks, .npz reading, task runners
]

# Known exceptions, each owned by an open issue; delete the entry with the fix (the test fails on a stale entry).
ALLOWED_PRIVATE: set[tuple[str, str]] = set()
ALLOWED_CYCLES: set[frozenset[str]] = set()  # none left: a new cycle is broken, not listed


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the module imported (deepest existing module of the dotted name)
    names: tuple[str, ...]  # names taken from it (from-imports)
    line: int
    top_level: bool  # executed at import time (not in a function, not under TYPE_CHECKING)
    typing_only: bool  # under ``if TYPE_CHECKING:``: never executed


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def resolve(name: str) -> str:
    """The deepest prefix of ``name`` that is one of our modules."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return name


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str) -> list[Import]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, top: bool, typing: bool = False) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(module, resolve(alias.name), (), child.lineno, top, typing))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                names = tuple(a.name for a in child.names)
                for name in names:
                    target = resolve(f"{base}.{name}")
                    taken = (name,) if target == resolve(base) else ()
                    found.append(Import(module, target, taken, child.lineno, top, typing))
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(child, False, typing)
            elif isinstance(child, ast.If) and is_type_checking(child):
                visit(child, False, True)
            else:
                visit(child, top, typing)

    visit(ast.parse(path.read_text(encoding="utf-8")), True)
    return found


IMPORTS = [imp for module in MODULES for imp in imports_of(module)]
OURS = [imp for imp in IMPORTS if imp.target.startswith("reluscope")]


def is_private(name: str) -> bool:
    """``_helper`` is private; ``__version__`` and other dunders are not."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer(module: str) -> int:
    name = component(module)
    for index, members in enumerate(LAYERS):
        if name in members:
            return index
    raise AssertionError(f"{module}: its package {name!r} is in no layer of LAYERS; add it where it belongs")


def test_every_module_has_a_layer():
    for module in MODULES:
        layer(module)


def test_nothing_imports_upward():
    upward = [
        f"{imp.source} imports {imp.target} (line {imp.line})" for imp in OURS if layer(imp.target) < layer(imp.source)
    ]
    assert upward == [], "imports against the layering of docs/architecture.md:\n" + "\n".join(upward)


def test_no_private_module_or_name_of_another_package():
    bad, used = [], set()
    for imp in OURS:
        if component(imp.source) == component(imp.target):
            continue
        private_module = any(part.startswith("_") for part in imp.target.split(".")[2:])
        private_name = any(is_private(name) for name in imp.names)
        if private_module or private_name:
            key = (imp.source, imp.target)
            if key in ALLOWED_PRIVATE:
                used.add(key)
                continue
            bad.append(f"{imp.source} imports {imp.target} {list(imp.names)} (line {imp.line})")
    assert bad == [], "promote these helpers to the public API of their package:\n" + "\n".join(bad)
    assert used == ALLOWED_PRIVATE, f"fixed, so delete from ALLOWED_PRIVATE: {sorted(ALLOWED_PRIVATE - used)}"


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module in the import graph (Tarjan)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in OURS:
        if not imp.typing_only and imp.target in MODULES and imp.target != imp.source:
            graph[imp.source].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component_: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component_.append(w)
                if w == v:
                    break
            if len(component_) > 1:
                found.append(sorted(component_))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_no_import_cycles():
    found = [frozenset(c) for c in cycles()]
    new = [sorted(c) for c in found if c not in ALLOWED_CYCLES]
    assert new == [], f"import cycles (break them: move the shared piece down a module): {new}"
    stale = ALLOWED_CYCLES - set(found)
    assert not stale, f"fixed, so delete from ALLOWED_CYCLES: {[sorted(c) for c in stale]}"


def test_the_graph_reader_sees_real_imports():
    """The checks above are only as good as the graph: spot-check edges we know exist."""
    edges = {(imp.source, imp.target) for imp in OURS}
    assert ("reluscope.nn.model", "reluscope.nn.activations") in edges
    assert ("reluscope.torch._dist", "reluscope.diagnose") in edges
    assert ("reluscope.nn._fast", "reluscope.nn.activations") in edges


PACKAGES = sorted(m for m, p in MODULES.items() if p.name == "__init__.py" and m != "reluscope")
PUBLIC_MODULES = sorted(m for m in MODULES if not any(part.startswith("_") for part in m.split(".")))


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_all_lists_only_public_documented_objects(module):
    if component(module) == "torch":
        pytest.importorskip("torch")
    if component(module) == "integrations":
        import_torchvision()  # Lightning and transformers import torchvision when it is installed (see conftest)
    mod = importlib.import_module(module)
    names = getattr(mod, "__all__", None)
    if names is None:
        assert module not in PACKAGES, f"package {module} has no __all__"
        return
    assert len(names) == len(set(names)), f"{module}.__all__ repeats a name"
    for name in names:
        assert not is_private(name), f"{module}.__all__ exports the private name {name}"
        assert hasattr(mod, name), f"{module}.__all__ lists {name}, which {module} does not define"
        obj = getattr(mod, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert inspect.getdoc(obj), f"{module}.{name} is public but has no docstring"


def test_helpers_that_leaked_stay_private():
    leaks = {
        "reluscope.explain": ["fmt"],
        "reluscope.remedies": ["check_tau"],
        "reluscope.experiments": [
            "parse_float_list",
            "parse_int_list",
            "parse_name_list",
            "sweep_command",
            "born_dead_command",
            "train_command",
            "format_number",
        ],
    }
    for module, names in leaks.items():
        exported = importlib.import_module(module).__all__
        assert not set(names) & set(exported), f"{module}.__all__ exports helpers {set(names) & set(exported)}"


def test_optional_libraries_stay_in_their_packages():
    outside: list[str] = []
    for imp in IMPORTS:
        top = imp.target.split(".")[0]
        where = component(imp.source)
        if top == "matplotlib" and where != "report":
            outside.append(f"{imp.source} imports matplotlib (line {imp.line}); plots live in report/")
        if top == "torch" and imp.top_level and where not in {"torch", "integrations"}:
            outside.append(f"{imp.source} imports torch at module level (line {imp.line}); import it lazily")
    assert outside == [], "\n".join(outside)
