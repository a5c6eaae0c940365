"""The one owner of cache keys: a cell's key is the hash of a canonical record of everything that
determines it.

A record is plain JSON data: the fully resolved parameters of the plugins involved (defaults
included, read from their declared keyword-only parameters), seeds, the keys of the cells it
depends on, and the code identity of every plugin involved (:func:`code_identity`). Two cells
with the same record compute the same result, so a cached result is reused exactly when its key
matches, and nothing else decides. Nothing here imports torch.
"""

from __future__ import annotations

import ast
import hashlib
import json
import sys
from functools import cache
from importlib import metadata, util
from pathlib import Path
from typing import Any

KEY_LENGTH = 16


def digest(record: Any, length: int = KEY_LENGTH) -> str:
    """The key of a canonical record: SHA-256 of its sorted-key JSON, ``length`` hex digits."""
    blob = json.dumps(record, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (a weights file, a TorchScript archive): the content, not the
    name, decides. Remembered per (path, size, modification time) within a process."""
    st = Path(path).stat()
    return _file_digest(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@cache
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- code identity ------------------------------------------------------------------------------


def module_file(name: str) -> Path | None:
    """The source file of module ``name``, found on disk without importing anything."""
    top, *rest = name.split(".")
    spec = util.find_spec(top) if top not in sys.modules else sys.modules[top].__spec__
    if spec is None or not spec.origin:
        return None
    base = Path(spec.origin).parent if spec.submodule_search_locations else None
    if not rest:
        return Path(spec.origin) if spec.origin.endswith(".py") else None
    if base is None:
        return None
    for candidate in (base.joinpath(*rest).with_suffix(".py"), base.joinpath(*rest, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def _imports(name: str, path: Path) -> set[str]:
    """Modules named by the import statements of the module ``name`` (file ``path``), anywhere in
    it (function-level imports included), resolved to absolute names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import mod`
    return found


@cache
def _closure(module: str) -> tuple[tuple[str, str], ...]:
    """(module, SHA-256 of its source) for ``module`` and every module of the same top-level
    package it imports, transitively: a change anywhere in the code a plugin runs changes it."""
    top = module.split(".")[0]
    seen: dict[str, str] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = module_file(name)
        if path is None:
            continue
        seen[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        todo += [m for m in _imports(name, path) if m.split(".")[0] == top and m not in seen]
    return tuple(sorted(seen.items()))


@cache
def _packages() -> dict[str, list[str]]:
    """{top-level package: distributions that install it}, read once per process: it lists every
    file of every installed distribution (about a second with a few hundred installed)."""
    return dict(metadata.packages_distributions())


@cache
def _distribution(module: str) -> tuple[str, str]:
    """(distribution name, version) that installed ``module``'s top-level package."""
    top = module.split(".")[0]
    names = _packages().get(top, [])
    for name in names:
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    if top in sys.modules and hasattr(sys.modules[top], "__version__"):
        return top, str(sys.modules[top].__version__)
    return top, "unknown"


def code_identity(module: str) -> dict[str, str]:
    """What identifies the code of a plugin defined in ``module``: the distribution that installed
    it, its version, and a hash of the sources of the module and of every module of the same
    package it imports (transitively). For built-ins the distribution is xaibench; for a
    third-party plugin its own."""
    dist, version = _distribution(module)
    return {"module": module, "distribution": dist, "version": version,
            "code": digest(_closure(module), length=KEY_LENGTH)}


def plugin_identity(obj: Any) -> dict[str, Any]:
    """:func:`code_identity` of the module that defines the class or function ``obj``; for a
    method computed by a library (a method source such as ``captum:<Class>``), also the library's
    distribution, version and class (``obj.library_identity()``)."""
    identity: dict[str, Any] = dict(code_identity(obj.__module__))
    library = getattr(obj, "library_identity", None)
    if callable(library):
        identity["library"] = library()
    return identity


# -- comparing records ----------------------------------------------------------------------------


def flatten(record: Any, prefix: str = "") -> dict[str, Any]:
    """A nested record as {dotted path: leaf value}."""
    if isinstance(record, dict):
        out: dict[str, Any] = {}
        for k, v in record.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: record}


def differences(old: dict, new: dict) -> list[str]:
    """What changed between two records, one "path: old -> new" line per leaf that differs, each
    compared as :func:`digest` sees it (a tuple read back from a record's JSON is a list)."""
    a, b = (flatten(json.loads(json.dumps(r, default=str))) for r in (old, new))
    lines = []
    for path in sorted(set(a) | set(b)):
        if a.get(path, "<absent>") != b.get(path, "<absent>"):
            lines.append(f"{path}: {a.get(path, '<absent>')!r} -> {b.get(path, '<absent>')!r}")
    return lines
