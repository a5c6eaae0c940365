"""Plugin registries: METHODS, METRICS, DATASETS and MODELS (the config class of each trainable
architecture name, and of each model source: ``torchvision``, ``timm``, ``torchscript``, ``python``,
``given``; an ``arch`` of "<source>:<name>" is looked up by its source).

Every plugin is registered once, by an entry point: built-ins are entry points of the ``xaibench``
distribution itself (pyproject.toml), third-party distributions add theirs in the groups
``xaibench.methods``, ``xaibench.metrics``, ``xaibench.datasets`` and ``xaibench.models``. Names
are known from package metadata alone: looking a name up imports only the module that defines it.
:meth:`Registry.register` adds an object at run time (tests, notebooks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any


class RegistryError(LookupError):
    """An unknown or duplicated plugin name."""


def _source_of(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _is_target(ep: metadata.EntryPoint, obj: Any) -> bool:
    """Whether entry point ``ep`` names ``obj`` (by module and qualified name: nothing imported)."""
    return (ep.module, ep.attr) == (getattr(obj, "__module__", None), getattr(obj, "__qualname__", None))


def _entry_point_source(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    dist_name = dist.metadata["Name"] if dist is not None else "?"
    return f"entry point {ep.value!r} of distribution {dist_name!r}"


def description(obj: Any) -> str:
    """First line of a plugin's docstring: its one-line description."""
    return first_line(getattr(obj, "__doc__", None))


def first_line(doc: str | None) -> str:
    """The first line of a docstring, or "(no description)"."""
    doc = (doc or "").strip()
    return doc.splitlines()[0].strip() if doc else "(no description)"


class Registry:
    """A name -> plugin class mapping: the entry points of ``group``, and objects registered at run
    time with :meth:`register`.

    Args:
        kind: what the plugins are ("method", "metric", "dataset"), used in messages.
        group: the entry-point group read lazily on first lookup.
        entry_points: a callable returning the entry points of ``group`` (tests fake it).
    """

    def __init__(
        self,
        kind: str,
        group: str,
        *,
        entry_points: Callable[[str], Iterable[metadata.EntryPoint]] | None = None,
    ) -> None:
        self.kind = kind
        self.group = group
        self._entry_points_fn = entry_points or (lambda g: metadata.entry_points(group=g))
        self._plugins: dict[str, Any] = {}
        self._sources: dict[str, str] = {}
        self._eps: dict[str, metadata.EntryPoint] | None = None

    # -- registration at run time ------------------------------------------------------------
    def register(self, name: str) -> Callable[[Any], Any]:
        """Class decorator registering ``cls`` under ``name`` at run time (a plugin of a package
        is registered by its entry point instead)."""

        def decorator(obj: Any) -> Any:
            ep = self._entry_points().get(name)
            if ep is not None and not _is_target(ep, obj):
                raise RegistryError(
                    f"duplicate {self.kind} name {name!r}: {_entry_point_source(ep)} and "
                    f"{_source_of(obj)}; rename one of them")
            self._add(name, obj, _source_of(obj))
            return obj

        return decorator

    def _add(self, name: str, obj: Any, source: str) -> None:
        known = self._plugins.get(name)
        if known is not None and known is not obj:
            raise RegistryError(
                f"duplicate {self.kind} name {name!r}: defined by {self._sources[name]} "
                f"and by {source}; rename one of them"
            )
        self._plugins[name] = obj
        self._sources.setdefault(name, source)

    # -- entry points ---------------------------------------------------------------------------
    def _entry_points(self) -> dict[str, metadata.EntryPoint]:
        if self._eps is None:
            eps: dict[str, metadata.EntryPoint] = {}
            for ep in self._entry_points_fn(self.group):
                other = eps.get(ep.name)
                if other is not None and other.value != ep.value:
                    raise RegistryError(
                        f"duplicate {self.kind} name {ep.name!r}: {_entry_point_source(other)} "
                        f"and {_entry_point_source(ep)}; uninstall or rename one of them"
                    )
                eps[ep.name] = ep
            self._eps = eps
        return self._eps

    def _load(self, name: str) -> Any:
        ep = self._entry_points()[name]
        try:
            obj = ep.load()
        except Exception as exc:  # a broken third-party plugin must say where it comes from
            raise RegistryError(
                f"cannot load {self.kind} {name!r} from {_entry_point_source(ep)}: {exc}"
            ) from exc
        self._add(name, obj, _entry_point_source(ep))
        return obj

    # -- lookup -----------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """All known names, without importing any plugin module."""
        return sorted(set(self._plugins) | set(self._entry_points()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def check(self, name: str) -> None:
        """Raise a RegistryError listing the known names when ``name`` is unknown."""
        if name not in self._plugins and name not in self._entry_points():
            known = ", ".join(self.names()) or "(none)"
            raise RegistryError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}")

    def get(self, name: str) -> Any:
        """The plugin class registered as ``name``, importing its module on first use."""
        self.check(name)
        obj = self._plugins.get(name)
        return obj if obj is not None else self._load(name)

    def entry_point(self, name: str) -> metadata.EntryPoint | None:
        """The entry point that registers ``name`` (None for an object registered at run time)."""
        return self._entry_points().get(name)

    def names_for(self, obj: Any) -> list[str]:
        """The names ``obj`` is registered under (entry points are compared by their value, so
        nothing is imported), e.g. ``MODELS.names_for(ModelConfig)``: the trainable architectures."""
        found = {n for n, ep in self._entry_points().items() if _is_target(ep, obj)}
        return sorted(found | {n for n, o in self._plugins.items() if o is obj})

    def items(self) -> list[tuple[str, Any]]:
        """(name, plugin) for every known name; imports every plugin module."""
        return [(name, self.get(name)) for name in self.names()]

    def source(self, name: str) -> str:
        self.get(name)
        return self._sources[name]


METHODS = Registry("method", "xaibench.methods")
METRICS = Registry("metric", "xaibench.metrics")
DATASETS = Registry("dataset", "xaibench.datasets")
MODELS = Registry("model", "xaibench.models")  # arch name -> the config class that builds it
REGISTRIES = {"methods": METHODS, "metrics": METRICS, "datasets": DATASETS, "models": MODELS}
