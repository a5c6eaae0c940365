"""The package's shape: bench/ grouped by concern (the layers below), no import cycles between
xaibench modules (function-level imports included), the run layer not importing the report, the
report reading run folders only (no model, run, plugin or config code), each plugin built once
per run, the layout picture in docs/development.md in step with the folders, and no long
functions in bench/."""

import ast
import functools
import re
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
    assert "xaibench.run.plan" in graph["xaibench.run.execute"]  # the graph sees the imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def in_layer(module: str, *layers: str) -> bool:
    return any(module == f"xaibench.{layer}" or module.startswith(f"xaibench.{layer}.") for layer in layers)


def test_the_run_layer_does_not_import_the_report():
    graph = import_graph()
    run = [m for m in graph if in_layer(m, "run")]
    assert "xaibench.run.writer" in run
    found = {m: sorted(r for r in reachable(graph, m) if in_layer(r, "report")) for m in run}
    assert not {m: r for m, r in found.items() if r}, found


# what a module that reads run folders has no business importing
NOT_FOR_THE_REPORT = ("run", "models", "methods", "metrics", "datasets", "config", "registry", "params",
                      "plugins", "check")


def test_the_report_reads_run_folders_only():
    graph = import_graph()
    report = [m for m in graph if in_layer(m, "report")]
    assert "xaibench.report.render" in report
    found = {m: sorted(r for r in reachable(graph, m) if in_layer(r, *NOT_FOR_THE_REPORT)) for m in report}
    assert not {m: r for m, r in found.items() if r}, found
    names = {"aopc", "pompom", "inverse", "gradcam", "mprt"}  # no plugin is named in report code
    for path in (ROOT / "bench" / "report").glob("*.py"):
        quoted = set(re.findall(r'["\']([a-z_]+)["\']', path.read_text()))
        assert not quoted & names, (path.name, quoted & names)


def test_the_finders_see_a_forbidden_import():
    graph = {"xaibench.run.writer": {"xaibench.io"}, "xaibench.io": {"xaibench.report.render"},
             "xaibench.report.render": set()}
    assert reachable(graph, "xaibench.run.writer") == {"xaibench.io", "xaibench.report.render"}
    assert in_layer("xaibench.report.render", "report") and not in_layer("xaibench.reports", "report")


def test_each_plugin_is_built_once_per_run_and_the_run_uses_those(tmp_path, monkeypatch):
    """The config check builds the dataset, every method and every metric once; the plan holds
    them; execute, writer and report build none (a second build, or a run using another
    instance than the plan's, fails here)."""
    from xaibench.config import parse
    from xaibench.datasets.synthetic import Synthetic
    from xaibench.methods.gradcam import GradCAM
    from xaibench.methods.random import RandomMap
    from xaibench.metrics.aopc import AOPC
    from xaibench.metrics.pompom import POMPOM
    from xaibench.report.render import render
    from xaibench.run.plan import plan as make_plan
    from xaibench.run.runner import run

    built: dict[str, list] = {}
    for cls in (Synthetic, GradCAM, RandomMap, AOPC, POMPOM):
        def counting(init, name=cls.__name__):
            @functools.wraps(init)  # the signature stays the schema
            def counted(self, *args, **kwargs):
                built.setdefault(name, []).append(self)
                init(self, *args, **kwargs)
            return counted
        monkeypatch.setattr(cls, "__init__", counting(cls.__init__))
    used = []
    attribute = GradCAM.attribute
    monkeypatch.setattr(GradCAM, "attribute", lambda self, *a: used.append(self) or attribute(self, *a))
    raw = {"run": {"device": "cpu", "batch_size": 8, "bootstrap": 100, "out": str(tmp_path), "threads": 1},
           "dataset": {"name": "synthetic", "variant": "colour", "image_size": 32, "n_train": 16,
                       "n_val": 8, "n_test": 16, "radius": [3, 6], "n_shapes": [1, 3]},
           "models": {"resnet18": {"arch": "resnet18", "epochs": 1}},
           "methods": {"gradcam": {}, "random": {}},
           "metrics": {"aopc": {"patch_size": 8, "steps": 2}, "pompom": {}}}
    config = parse(raw, name="once", source="test")
    assert {k: len(v) for k, v in built.items()} == {"Synthetic": 1, "GradCAM": 1, "RandomMap": 1,
                                                     "AOPC": 1, "POMPOM": 1}
    the_plan = make_plan(config)
    assert the_plan.dataset is built["Synthetic"][0] and the_plan.methods["gradcam"] is built["GradCAM"][0]
    assert the_plan.metrics["aopc"] is built["AOPC"][0]
    import torch

    threads = torch.get_num_threads()
    result = run(config, progress=False)
    assert torch.get_num_threads() == threads  # the run's thread setting holds for the run only
    render(result.run_dir)
    assert {k: len(v) for k, v in built.items()} == {"Synthetic": 1, "GradCAM": 1, "RandomMap": 1,
                                                     "AOPC": 1, "POMPOM": 1}
    assert used and all(m is built["GradCAM"][0] for m in used)


def layout_picture() -> str:
    """The tree under "## Layout" in docs/development.md (its first fenced block)."""
    text = (ROOT / "docs" / "development.md").read_text()
    section = text.split("\n## Layout", 1)[1]
    return re.search(r"```text\n(.*?)```", section, re.S).group(1)


def pictured(tree: str) -> set[str]:
    """The paths a tree picture names: "bench/run/plan.py", "bench/run/", ... (indentation = depth)."""
    paths, stack = set(), []
    for line in tree.splitlines():
        m = re.match(r"^(\s*)(\S+)", line)
        if not m or not re.match(r"^[\w.]+/?$", m.group(2)):
            continue
        depth = len(m.group(1)) // 4
        stack[depth:] = [m.group(2)]
        paths.add("".join(stack))
    return paths


def test_the_layout_picture_matches_the_folders():
    shown = {p for p in pictured(layout_picture()) if p.startswith("bench/") and p != "bench/"}
    actual = {f"bench/{p.relative_to(ROOT / 'bench').as_posix()}" + ("/" if p.is_dir() else "")
              for p in (ROOT / "bench").rglob("*")
              if p.suffix == ".py" or (p.is_dir() and p.name != "__pycache__")}
    actual = {p for p in actual if not p.endswith("__init__.py") and not p.endswith("__main__.py")}
    assert shown == actual, {"missing from the picture": sorted(actual - shown),
                             "pictured but not there": sorted(shown - actual)}


def test_the_picture_reader_reads_nesting():
    assert pictured("bench/\n    run/\n        plan.py\n    cli.py   the command line\n") == {
        "bench/", "bench/run/", "bench/run/plan.py", "bench/cli.py"}


def test_no_long_functions_in_bench():
    long = []
    for path in (ROOT / "bench").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.name}:{node.name} ({lines} lines)")
    assert not long, long


def test_module_files_are_found_where_the_package_is_installed():
    assert module_file("xaibench.run.plan").name == "plan.py"
    assert module_file("xaibench.methods.joint.train").parts[-2:] == ("joint", "train.py")
    assert module_file("xaibench.run.plan.Plan") is None  # a class, not a module
