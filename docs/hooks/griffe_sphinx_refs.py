"""A griffe extension: the docstrings' Sphinx cross-references as mkdocstrings links.

The docstrings write references the Sphinx way (``:func:`perturbation_curves```,
``:class:`~xaibench.models.Classifier```, ``:meth:`attribute```). Once the ``xaibench`` package is
loaded, each is resolved like Sphinx does (a dotted ``xaibench.`` path, else relative to the object,
its class, its module and the module's imports) and becomes an optional autorefs link: a link where
the target has a page in the API reference, code text where it does not. A reference whose target
does not exist anywhere in the package is a warning, so ``mkdocs build --strict`` fails on it.
A trailing ``::`` (reST's literal block marker) becomes ``:``, and an ``Args:`` or ``Attributes:``
entry naming several keys at once (``mean, std: ...``) becomes one entry per key.
"""

from __future__ import annotations

import html
import logging
import re

import griffe

ROLE = re.compile(r":(?:py:)?(func|meth|class|mod|attr|data|obj|exc|const):`(~?)([\w.]+)(\(\))?`")
LOG = logging.getLogger("mkdocs.plugins.xaibench.sphinx_refs")


def _exists(package: griffe.Module, path: str) -> bool:
    parts = path.split(".")
    if parts[0] != package.name:
        return False
    obj: griffe.Object | griffe.Alias = package
    for part in parts[1:]:
        try:
            obj = obj.members[part]
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            return False  # absent, or an alias to another package (e.g. a module's `import importlib`)
    return True


def _scopes(obj: griffe.Object | griffe.Alias) -> list[str]:
    """The paths a relative name is looked up under: the object, its parents up to the module."""
    scopes = []
    current: griffe.Object | griffe.Alias | None = obj
    while current is not None:
        scopes.append(current.path)
        if current.is_module:
            break
        current = current.parent
    return scopes


def resolve(package: griffe.Module, obj: griffe.Object | griffe.Alias, name: str) -> str | None:
    """The full path ``name`` refers to from ``obj``'s docstring, or None when nothing matches."""
    if name.split(".")[0] == package.name:
        return name if _exists(package, name) else None
    for scope in _scopes(obj):
        candidate = f"{scope}.{name}"
        if _exists(package, candidate):
            member = package[candidate[len(package.name) + 1:]]
            if member.is_alias:  # imported into the module: the target's own path
                try:
                    return member.target_path
                except Exception:  # noqa: BLE001 (an alias griffe cannot follow)
                    return candidate
            return candidate
    return None


SECTION = re.compile(r"^(\s*)(Args|Arguments|Attributes|Parameters|Other Parameters):\s*$")
ITEM = re.compile(r"^(\s*)(\w+(?:, \w+)+)( \(.*?\))?:(.*)$")


def split_items(text: str) -> str:
    """Google-style entries naming several parameters (``a, b: text``) as one entry per name."""
    lines, out, i = text.splitlines(), [], 0
    section_indent: int | None = None
    while i < len(lines):
        line = lines[i]
        header = SECTION.match(line)
        if header:
            section_indent = len(header.group(1))
            out.append(line)
            i += 1
            continue
        indent = len(line) - len(line.lstrip())
        if section_indent is not None and line.strip() and indent <= section_indent:
            section_indent = None
        item = ITEM.match(line) if section_indent is not None else None
        if item and len(item.group(1)) > section_indent:
            rest = []
            i += 1
            while i < len(lines) and (not lines[i].strip()
                                      or len(lines[i]) - len(lines[i].lstrip()) > indent):
                rest.append(lines[i])
                i += 1
            while rest and not rest[-1].strip():
                i -= 1
                rest.pop()
            for name in item.group(2).split(", "):
                out.append(f"{item.group(1)}{name}{item.group(3) or ''}:{item.group(4)}")
                out.extend(rest)
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _rewrite(package: griffe.Module, obj: griffe.Object | griffe.Alias) -> None:
    doc = obj.docstring
    if doc is None:
        return

    def link(match: re.Match) -> str:
        _, short, name, call = match.groups()
        target = resolve(package, obj, name)
        title = (name.rsplit(".", 1)[-1] if short else name) + (call or "")
        if target is None:
            where = f"{obj.filepath}:{doc.lineno}" if not obj.is_alias else obj.path
            LOG.warning("%s: docstring of %s refers to %r, which does not exist in %s",
                        where, obj.path, name, package.name)
            return f"`{title}`"
        return (f'<autoref identifier="{html.escape(target)}" optional>'
                f'<code>{html.escape(title)}</code></autoref>')

    value = ROLE.sub(link, doc.value)
    value = re.sub(r"(\w)::\n", r"\1:\n", value)
    value = split_items(value)
    if value != doc.value:
        doc.value = value


class SphinxRefs(griffe.Extension):
    """Rewrite the Sphinx roles of every docstring of a loaded package (see the module)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            _rewrite(pkg, obj)
            for member in obj.members.values():
                if not member.is_alias:
                    stack.append(member)
