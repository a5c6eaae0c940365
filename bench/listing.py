"""What ``xaibench list`` prints: every registered plugin's name, its one-line description and the
attributes that matter for its kind, without importing torch.

Each plugin is read from its module's source (its class docstring and the attributes assigned
literally in its body), which needs no import at all; only a plugin whose source does not tell
(an attribute inherited or computed) is imported, with torch if its module needs it.
"""

from __future__ import annotations

import ast
from importlib import metadata

from xaibench.keys import module_file
from xaibench.registry import REGISTRIES, Registry, description, first_line

ATTRIBUTES = {"methods": ("reduction",), "metrics": ("family", "higher_is_better", "requires_masks"),
              "datasets": (), "models": ()}


def summary(registry: Registry, name: str, attributes: tuple[str, ...]) -> tuple[str, dict]:
    """(description, {attribute: value}) of plugin ``name``: from its source when the source tells,
    else from the imported class."""
    found = from_source(registry.entry_point(name), attributes)
    if found is not None:
        return found
    plugin = registry.get(name)
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
    rows = [(name, *summary(registry, name, attributes)) for name in registry.names()]
    width = max((len(name) for name, _, _ in rows), default=0)
    out = []
    for name, text, attrs in rows:
        line = f"{name:<{width}}  {text}"
        if attrs.get("reduction"):
            line += f" [channels: {attrs['reduction']}]"
        if kind == "metrics":
            better = "higher" if attrs["higher_is_better"] else "lower"
            line += f" [{attrs['family'] or 'no family'}; {better} is better"
            line += ", needs masks]" if attrs["requires_masks"] else "]"
        out.append(line)
    for prefix in registry.source_names():  # sources: any class of a library, by name
        source = registry.library_source(prefix)
        placeholder = f"{prefix}:{getattr(source, 'placeholder', '<Class>')}"
        out.append(f"{placeholder:<{width}}  {source.description} ({source.distribution} "
                   f"{source.version()})")
    return out
