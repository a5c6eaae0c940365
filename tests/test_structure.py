"""The package's shape: no import cycles between xaibench modules (function-level imports
included) and no long functions in bench/ (the runner reads top down as plan, execute, write)."""

import ast
from pathlib import Path

from xaibench.keys import _imports, module_file

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"bench": "xaibench", "methods": "xaibench.methods", "metrics": "xaibench.metrics",
            "datasets": "xaibench.datasets"}
MAX_FUNCTION_LINES = 50


def modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> its source in the repository."""
    out = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            out[".".join((package, *parts))] = path
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: {m for m in _imports(name, path) if m in mods and m != name}
            for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    graph = import_graph()
    assert "xaibench.plan" in graph["xaibench.execute"]  # the graph sees the imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_no_long_functions_in_bench():
    long = []
    for path in (ROOT / "bench").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.name}:{node.name} ({lines} lines)")
    assert not long, long


def test_module_files_are_found_where_the_package_is_installed():
    assert module_file("xaibench.plan").name == "plan.py"
    assert module_file("xaibench.methods.joint.train").parts[-2:] == ("joint", "train.py")
    assert module_file("xaibench.plan.Plan") is None  # a class, not a module
