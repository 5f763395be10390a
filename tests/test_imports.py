"""The package's import graph, read from the source with `ast`: no import cycles and nothing importing "upwards"
(only cli.py imports stages/, nothing imports cli.py), as docs/architecture.md says. Every import counts, those
inside functions included: a lazy import only hides a cycle until the function runs."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

SRC = REPO / "src"
STAGES, CLI = "reslab.stages", "reslab.cli"  # the edge of the house: they use the rest; only the CLI uses a stage
RUNNERS = (CLI, "reslab.cluster")  # what runs a stage: the CLI, and the Ray executor's task on another machine


def module_names(src: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module under `src` (a package is named by its __init__.py)."""
    out = {}
    for path in sorted(src.rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that module `name` imports anywhere in its file, relative imports resolved.

    `from a.b import c` imports the module a.b.c when there is one, else the module a.b (c is a name in it).
    """
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x: relative to the package holding this module
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # import a.b.c of a package: the deepest module it names
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def import_graph(src: Path) -> dict[str, set[str]]:
    """Module -> the modules it imports, for the packages under `src`."""
    files = module_names(src)
    return {name: imported_modules(name, path, set(files)) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None when the graph has none (depth-first search, sorted order)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once all it reaches is explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    graph = import_graph(SRC)
    assert len(graph) > 50 and "reslab.training.loop" in graph["reslab.training"], "the graph misses imports"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def is_upward(name: str, target: str) -> bool:
    """Whether module `name` importing `target` reaches up to the edge: the CLI, or a stage from anywhere but what
    runs stages (a stage that needs another stage's code needs it moved down into the package it belongs to)."""
    return target == CLI or target.startswith(STAGES + ".") and name not in (*RUNNERS, STAGES)  # STAGES: the face


def test_nothing_imports_the_stages_or_the_cli_but_the_cli():
    graph = import_graph(SRC)
    assert any(target.startswith(STAGES + ".") for target in graph[CLI]), "the graph misses the CLI's imports"
    upward = [(name, target) for name, targets in graph.items() for target in sorted(targets)
              if is_upward(name, target)]
    assert not upward, "imports upwards from stages/ or cli: " + ", ".join(f"{a} -> {b}" for a, b in upward)


@pytest.mark.parametrize("name, target, upward", [
    ("reslab.stages.train", "reslab.stages.evaluate", True),  # stage to stage
    ("reslab.tracking.store", "reslab.stages.train", True),
    ("reslab.training.loop", "reslab.cli", True),
    ("reslab.cli", "reslab.stages.train", False),
    ("reslab.cluster", "reslab.stages.train", False),  # the Ray task runs the train stage
    ("reslab.cluster", "reslab.cli", True),
    ("reslab.stages.train", "reslab.training", False),
    ("reslab.stages", "reslab.stages.train", False),  # the package's face
    ("reslab.stagesx", "reslab.stages_util", False),  # a name that only starts like it
])
def test_upward_means_towards_the_stages_or_the_cli(name, target, upward):
    assert is_upward(name, target) == upward


@pytest.fixture
def planted(tmp_path) -> Path:
    """A small package with every kind of import the graph resolves, and no cycle."""
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "import os\nfrom pkg.sub import b\n",  # a module of a package, by absolute import
        "pkg/sub/__init__.py": "from .b import helper\n",  # a name in a module, relative
        "pkg/sub/b.py": "def helper():\n    from .. import c  # lazy\n    return c\n",  # two levels up
        "pkg/c.py": "import json\nfrom . import VERSION\n",  # a name in the package itself
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_graph_resolves_relative_and_lazy_imports(planted):
    assert import_graph(planted) == {"pkg": set(), "pkg.a": {"pkg.sub.b"}, "pkg.sub": {"pkg.sub.b"},
                                     "pkg.sub.b": {"pkg.c"}, "pkg.c": {"pkg"}}
    assert find_cycle(import_graph(planted)) is None


def test_a_cycle_through_a_lazy_import_is_found(planted):
    (planted / "pkg/c.py").write_text("def late():\n    from .a import x  # lazy\n    return x\n")
    assert find_cycle(import_graph(planted)) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
