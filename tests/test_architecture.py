"""The package's shape: a short training loop, no engine -> eval/viz imports, no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "hpm"
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    """hpm modules a file imports, at module level or inside functions."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from hpm.engine import distributed" imports the module hpm.engine.distributed
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module for a in node.names]
        else:
            continue
        out |= {n for n in names if n.split(".")[0] == "hpm"}
    return out


GRAPH = {name: {m for m in _imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def test_the_engine_does_not_import_evaluation_or_pictures() -> None:
    bad = {name: sorted(m for m in deps if m.startswith(("hpm.eval", "hpm.viz")))
           for name, deps in GRAPH.items() if name.startswith("hpm.engine")}
    assert not any(bad.values()), bad


def test_no_import_cycles() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(dep):] + [dep]))
            if dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("hpm.engine")))
def test_engine_functions_fit_on_one_screen(name: str) -> None:
    tree = ast.parse(MODULES[name].read_text())
    long = [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines in {name}: {long}"


def test_the_graph_sees_lazy_imports() -> None:
    """The checks above are only as good as the graph: it must include imports inside functions."""
    assert "hpm.engine.train" in GRAPH["hpm.pretrain"] and "hpm.eval.monitor" in GRAPH["hpm.pretrain"]
    assert "hpm.viz.figures" in GRAPH["hpm.pretrain"]  # imported inside run_pretrain
