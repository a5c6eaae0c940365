"""What ``xaibench list`` prints: every registered plugin's name, its one-line description and the
attributes that matter for its kind, without importing torch.

Each plugin class is imported with torch held back (:mod:`xaibench.lazy`), which takes
milliseconds for a module whose only module-level use of torch is ``import torch``. A class whose
module needs torch to import (e.g. it subclasses ``torch.nn.Module``) is read from its source
instead: its docstring and the attributes assigned literally in its body; only when the source
does not tell is torch imported, and the class with it.
"""

from __future__ import annotations

import ast
from importlib import metadata

from xaibench import lazy
from xaibench.keys import module_file
from xaibench.registry import REGISTRIES, Registry, description, first_line

ATTRIBUTES = {"methods": ("reduction",), "metrics": ("higher_is_better", "requires_masks"),
              "datasets": (), "models": ()}


def summary(registry: Registry, name: str, attributes: tuple[str, ...]) -> tuple[str, dict] | None:
    """(description, {attribute: value}) of plugin ``name``, inside :func:`xaibench.lazy.held_back`;
    None when only the class imported with torch can tell."""
    try:
        plugin = registry.get(name)
    except lazy.TorchNeeded:
        return from_source(registry.entry_point(name), attributes)
    return description(plugin), {a: getattr(plugin, a, None) for a in attributes}


def from_source(ep: metadata.EntryPoint | None, attributes: tuple[str, ...]) -> tuple[str, dict] | None:
    """(description, {attribute: value}) of the class an entry point names, read from its module's
    source without importing it; None when the class or a literal value of every attribute in
    its own body is not there."""
    path = module_file(ep.module) if ep is not None and "." not in ep.attr else None
    try:
        tree = ast.parse(path.read_text(), str(path)) if path is not None else None
    except (OSError, SyntaxError, ValueError):
        return None
    node = next((n for n in getattr(tree, "body", ()) if isinstance(n, ast.ClassDef) and n.name == ep.attr),
                None)
    if node is None:
        return None
    values = {}
    for stmt in node.body:
        target = (stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                  else stmt.target if isinstance(stmt, ast.AnnAssign) and stmt.value is not None else None)
        if isinstance(target, ast.Name) and target.id in attributes:
            try:
                values[target.id] = ast.literal_eval(stmt.value)
            except ValueError:
                return None
    return (first_line(ast.get_docstring(node)), values) if set(values) == set(attributes) else None


def lines(kind: str) -> list[str]:
    """One line per plugin of ``kind`` ("methods", "metrics", "datasets", "models")."""
    registry, attributes = REGISTRIES[kind], ATTRIBUTES[kind]
    with lazy.held_back(execute=False):  # torch is executed below only if a summary needs it
        found = {name: summary(registry, name, attributes) for name in registry.names()}
    if None in found.values():
        lazy.execute_deferred()
    rows = [(name, *(found[name] or summary(registry, name, attributes))) for name in found]
    width = max((len(name) for name, _, _ in rows), default=0)
    out = []
    for name, text, attrs in rows:
        line = f"{name:<{width}}  {text}"
        if attrs.get("reduction"):
            line += f" [channels: {attrs['reduction']}]"
        if kind == "metrics":
            line += f" [{'higher' if attrs['higher_is_better'] else 'lower'} is better"
            line += ", needs masks]" if attrs["requires_masks"] else "]"
        out.append(line)
    return out
