"""Plugin registries: METHODS, METRICS, DATASETS and MODELS (the config class of each trainable
architecture name, and of each model source: ``torchvision``, ``timm``, ``torchscript``, ``python``,
``given``; an ``arch`` of "<source>:<name>" is looked up by its source).

Every plugin is registered once, by an entry point: built-ins are entry points of the ``xaibench``
distribution itself (pyproject.toml), third-party distributions add theirs in the groups
``xaibench.methods``, ``xaibench.metrics``, ``xaibench.datasets`` and ``xaibench.models``. Names
are known from package metadata alone: looking a name up imports only the module that defines it.
:meth:`Registry.register` adds an object at run time (tests, notebooks).

A registry may also have *sources*: libraries whose classes are plugins by name, e.g. the method
``captum:DeepLift`` or the metric ``quantus:FaithfulnessEstimate``. A source is an entry point of
the registry's ``sources_group`` (methods: ``xaibench.method_sources``, metrics:
``xaibench.metric_sources``) named by its prefix ("captum"); the object it names has
``description`` (one line), ``version()``, ``check(name)`` (is there such a class; raises
:class:`RegistryError`, ideally without importing the library) and ``bind(name)`` (the plugin
class bound to that library class; imports the library). Sourced names are not listed by
:meth:`Registry.names` (there may be any number of them); :meth:`Registry.sources` lists the
sources.
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
        sources_group: str | None = None,
    ) -> None:
        self.kind = kind
        self.group = group
        self.sources_group = sources_group
        self._source_eps: dict[str, metadata.EntryPoint] | None = None
        self._bound: dict[str, Any] = {}
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

    # -- sources ----------------------------------------------------------------------------------
    def source_names(self) -> list[str]:
        """The prefixes of this registry's sources ("captum"), without importing any."""
        if self.sources_group is None:
            return []
        if self._source_eps is None:
            self._source_eps = {ep.name: ep for ep in self._entry_points_fn(self.sources_group)}
        return sorted(self._source_eps)

    def library_source(self, prefix: str) -> Any:
        """The source object registered as ``prefix`` (imports its module)."""
        self.source_names()
        assert self._source_eps is not None
        ep = self._source_eps[prefix]
        try:
            return ep.load()
        except Exception as exc:
            raise RegistryError(f"cannot load {self.kind} source {prefix!r} from "
                                f"{_entry_point_source(ep)}: {exc}") from exc

    def sources(self) -> list[tuple[str, Any]]:
        """(prefix, source object) of every source (imports their modules, not their libraries)."""
        return [(prefix, self.library_source(prefix)) for prefix in self.source_names()]

    def _sourced(self, name: str) -> tuple[Any, str] | None:
        """(source, library name) when ``name`` is "<source>:<name>" of a known source."""
        prefix, sep, rest = name.partition(":")
        if not sep or name in self._plugins or prefix not in self.source_names():
            return None
        return self.library_source(prefix), rest

    # -- lookup -----------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """All known names, without importing any plugin module."""
        return sorted(set(self._plugins) | set(self._entry_points()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def check(self, name: str) -> None:
        """Raise a RegistryError listing the known names when ``name`` is unknown (a sourced
        name "<source>:<name>" is checked by its source)."""
        sourced = self._sourced(name)
        if sourced is not None:
            source, rest = sourced
            source.check(rest)
            return
        if name not in self._plugins and name not in self._entry_points():
            known = ", ".join(self.names()) or "(none)"
            more = "".join(f"; or {p}:<name> ({self.library_source(p).description})"
                           for p in self.source_names())
            raise RegistryError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}{more}")

    def get(self, name: str) -> Any:
        """The plugin class registered as ``name``, importing its module on first use; for a
        sourced name, the class its source binds (made once per name)."""
        self.check(name)
        obj = self._plugins.get(name)
        if obj is not None:
            return obj
        sourced = self._sourced(name)
        if sourced is not None:
            if name not in self._bound:
                self._bound[name] = sourced[0].bind(sourced[1])
            return self._bound[name]
        return self._load(name)

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
        obj = self.get(name)
        if name in self._bound:
            return f"{self.kind} source {name.partition(':')[0]!r} ({_source_of(obj)})"
        return self._sources[name]


METHODS = Registry("method", "xaibench.methods", sources_group="xaibench.method_sources")
METRICS = Registry("metric", "xaibench.metrics", sources_group="xaibench.metric_sources")
DATASETS = Registry("dataset", "xaibench.datasets")
MODELS = Registry("model", "xaibench.models")  # arch name -> the config class that builds it
REGISTRIES = {"methods": METHODS, "metrics": METRICS, "datasets": DATASETS, "models": MODELS}
