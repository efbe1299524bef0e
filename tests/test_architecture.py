"""The package's shape: layers import only downwards, no import cycles, short functions and files.

The checkers take a package folder and a rank table, so the last tests run them on a small
package with planted violations: a checker that cannot fail checks nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "hpm"
MAX_FUNCTION_LINES = 60
MAX_FILE_LINES = 400

# A module may import from its own rank or a lower one. hpm.X.Y takes the rank of hpm.X.
RANKS: dict[str, int] = {
    "hpm": 0,  # the root package: its version only
    "hpm.errors": 0,
    "hpm.io": 0,
    "hpm.config": 1,
    "hpm.data": 2,
    "hpm.models": 2,
    "hpm.masking": 2,
    "hpm.losses": 3,
    "hpm.engine": 4,
    "hpm.eval": 5,
    "hpm.viz": 6,
    "hpm.export": 6,
    "hpm.pretrain": 7,
    "hpm.bench": 7,
    "hpm.peak_flops": 7,  # datasheet peak FLOPS, used by hpm bench only
    "hpm.study": 8,
    "hpm.cli": 9,
}


def module_name(path: Path, root: Path) -> str:
    """Dotted name of a file under the package folder ``root`` (a package is its ``__init__``)."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def find_modules(root: Path) -> dict[str, Path]:
    """Every module of the package folder ``root`` by dotted name."""
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def rank_of(name: str, ranks: dict[str, int]) -> int:
    """The layer of a module: that of its top-level package or module (``hpm.X`` for ``hpm.X.Y``)."""
    key = ".".join(name.split(".")[:2])
    if key not in ranks:
        raise AssertionError(f"module {name} has no rank: add {key!r} to the rank table (RANKS)")
    return ranks[key]


def _is_type_checking(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` or ``if typing.TYPE_CHECKING:``."""
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Import statements run at import or call time: all but those under ``if TYPE_CHECKING:``."""
    out: list[ast.Import | ast.ImportFrom] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        children = list(ast.iter_child_nodes(node))
        if _is_type_checking(node):
            children = list(node.orelse)  # type: ignore[attr-defined]
        todo.extend(children)
    return out


def _from_base(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The absolute module a ``from ... import`` names, relative imports resolved."""
    if not node.level:
        return node.module or ""
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path, root: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of the package a file imports at run time, at module level or inside functions."""
    importer = module_name(path, root)
    out: set[str] = set()
    for node in _runtime_imports(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            base = _from_base(node, importer, path.name == "__init__.py")
            # "from hpm.engine import distributed" imports the module hpm.engine.distributed
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        out |= {n for n in names if n.split(".")[0] == root.name}
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    """For each module of the package, the package's modules it imports."""
    modules = find_modules(root)
    return {name: {m for m in imports_of(path, root, modules) if m in modules and m != name}
            for name, path in modules.items()}


def layer_violations(root: Path, ranks: dict[str, int]) -> list[str]:
    """``importer (rank) -> imported (rank)`` for every import from a lower layer into a higher one."""
    modules = find_modules(root)
    out = []
    for name, path in modules.items():
        for dep in sorted(imports_of(path, root, modules)):
            if rank_of(dep, ranks) > rank_of(name, ranks):
                out.append(f"{name} ({rank_of(name, ranks)}) -> {dep} ({rank_of(dep, ranks)})")
    return out


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name)):
            return cycle
    return None


def long_functions(root: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``module.function: N lines`` for every function longer than ``limit`` (``def`` to last line)."""
    out = []
    for name, path in find_modules(root).items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    out.append(f"{name}.{node.name}: {lines} lines")
    return out


def long_files(root: Path, limit: int = MAX_FILE_LINES) -> list[str]:
    """``path: N lines`` for every file of the package longer than ``limit`` lines."""
    out = []
    for path in sorted(root.rglob("*.py")):
        lines = len(path.read_text().splitlines())
        if lines > limit:
            out.append(f"{path.relative_to(root.parent)}: {lines} lines")
    return out


# --------------------------------------------------------------------------- the package
def test_every_module_has_a_rank() -> None:
    unranked = sorted(name for name in find_modules(PACKAGE) if ".".join(name.split(".")[:2]) not in RANKS)
    assert not unranked, f"modules with no rank (add their package to RANKS): {unranked}"


def test_layers_import_only_downwards() -> None:
    bad = layer_violations(PACKAGE, RANKS)
    assert not bad, "imports from a lower layer into a higher one:\n  " + "\n  ".join(bad)


def test_no_import_cycles() -> None:
    cycle = import_cycle(import_graph(PACKAGE))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_functions_fit_on_one_screen() -> None:
    long = long_functions(PACKAGE)
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n  " + "\n  ".join(long)


def test_files_stay_short() -> None:
    long = long_files(PACKAGE)
    assert not long, f"files over {MAX_FILE_LINES} lines:\n  " + "\n  ".join(long)


# --------------------------------------------------------------------------- the checkers
def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _function(name: str, lines: int) -> str:
    """A function of exactly ``lines`` lines, ``def`` included."""
    return f"def {name}() -> int:\n" + "    x = 0\n" * (lines - 2) + "    return x\n"


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """A package ``hpm`` with low (rank 0) -> high (rank 1) imports, allowed and not."""
    return _write(tmp_path / "hpm", {
        "__init__.py": "",
        "high/__init__.py": "from hpm.low import VALUE\n",
        "high/deep.py": "from . import VALUE\nfrom ..low import VALUE as V\n",
        "low.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    import hpm.high\n"
            "VALUE = 1\n"
            "def lazy() -> None:\n    from hpm.high import deep\n"
        ),
        "long.py": _function("ok", MAX_FUNCTION_LINES) + _function("too_long", MAX_FUNCTION_LINES + 1),
        "big.py": "x = 0\n" * (MAX_FILE_LINES + 1),
        "full.py": "x = 0\n" * MAX_FILE_LINES,
    })


PLANTED_RANKS = {"hpm": 0, "hpm.low": 0, "hpm.long": 0, "hpm.big": 0, "hpm.full": 0, "hpm.high": 1}


def test_checkers_catch_an_upward_import_inside_a_function(planted: Path) -> None:
    assert layer_violations(planted, PLANTED_RANKS) == ["hpm.low (0) -> hpm.high.deep (1)"]


def test_checkers_resolve_relative_imports(planted: Path) -> None:
    assert import_graph(planted)["hpm.high.deep"] == {"hpm.high", "hpm.low"}


def test_checkers_catch_a_module_without_rank(planted: Path) -> None:
    with pytest.raises(AssertionError, match=r"module hpm\.high(\.deep)? has no rank: add 'hpm\.high' to the rank table"):
        layer_violations(planted, {k: v for k, v in PLANTED_RANKS.items() if k != "hpm.high"})


def test_checkers_catch_an_import_cycle(planted: Path) -> None:
    assert import_cycle(import_graph(planted)) == ["hpm.high", "hpm.low", "hpm.high.deep", "hpm.high"]
    (planted / "low.py").write_text("VALUE = 1\n")
    assert import_cycle(import_graph(planted)) is None


def test_checkers_catch_a_long_function_and_a_long_file(planted: Path) -> None:
    assert long_functions(planted) == [f"hpm.long.too_long: {MAX_FUNCTION_LINES + 1} lines"]
    assert long_files(planted) == [f"hpm/big.py: {MAX_FILE_LINES + 1} lines"]
