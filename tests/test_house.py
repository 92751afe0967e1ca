"""The core's house rules, read from the code: no import circle, no upward import between subpackages, no
deep-learning framework in the core, and no module past its size."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "harness"

#: The subpackages from the bottom up: a module may import its own subpackage and any below it, never one above.
#: The top-level modules (errors, config, dist, registry, files) are the foundation everything stands on.
LAYERS = ["measure", "models", "data", "backends", "results", "run", "cli"]
FRAMEWORKS = {"torch", "torch_npu", "mindspore", "onnxruntime", "jax", "tensorflow"}
MAX_LINES = 320
LONGER_ALLOWED = {"backends/hookspecs.py"}  # the contract: one documented hook spec after another


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports (at any depth of the file: a lazy import is still an edge)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return found


def graph() -> dict[str, set[str]]:
    """Module -> the harness modules it imports (a name imported from a package counts as the package)."""
    mods = _modules()
    return {name: {m for m in _imports(name, path) if m in mods and m != name} for name, path in mods.items()}


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
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

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return -1  # the foundation: harness itself and its top-level modules


def upward(g: dict[str, set[str]]) -> list[str]:
    """Imports from a subpackage into one above it (or from the foundation into any subpackage)."""
    bad = []
    for src, targets in g.items():
        if src == "harness":  # the package's face re-exports the public names plugin authors use
            continue
        for dst in targets:
            if _layer(dst) > _layer(src):
                bad.append(f"{src} -> {dst}")
    return sorted(bad)


def test_no_import_circle():
    assert circles(graph()) == []


def test_no_upward_import():
    assert upward(graph()) == []


def test_the_checks_catch_what_they_look_for():
    g = {"harness.a": {"harness.b"}, "harness.b": {"harness.a"}, "harness.c": set()}
    assert circles(g) == [["harness.a", "harness.b"]]
    assert upward({"harness.results.x": {"harness.run.y"}, "harness.run.y": {"harness.results.x"}}) == [
        "harness.results.x -> harness.run.y"]


def test_core_imports_no_framework():
    mods = _modules()
    bad = {name: sorted(m for m in _imports(name, path) if m.split(".")[0] in FRAMEWORKS)
           for name, path in mods.items()}
    assert {k: v for k, v in bad.items() if v} == {}


def test_modules_stay_small():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines()) for p in _modules().values()}
    assert {k: v for k, v in sizes.items() if v > MAX_LINES and k not in LONGER_ALLOWED} == {}


@pytest.mark.parametrize("package", LAYERS)
def test_each_subpackage_says_what_it_may_import(package):
    doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text(encoding="utf-8"))) or ""
    assert "May import" in doc, f"harness/{package}/__init__.py: its docstring says what it may import"
