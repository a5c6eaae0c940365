"""Method sources: methods computed by a library's own classes, named "<source>:<Class>" in a config
(``captum:DeepLift``). What every source shares lives here; a source is one small module that
says how its library's classes are found, configured and called (:mod:`xaibench.methods.captum_source`).

A sourced name is bound to a plugin class when it is first looked up
(:meth:`xaibench.registry.Registry.get`): a subclass of the source's method class whose
``__init__`` signature is built from the library's signatures (:func:`bound_class`), keyword-only
parameters with type hints and defaults, so the config check, cache keys, the manifest and the
docs read it as they read any plugin's. The cells of a sourced method are keyed by the library's
distribution and version too (:meth:`LibraryMethod.library_identity`).
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from importlib import metadata
from typing import Any, ClassVar, Literal

from xaibench.plugins import Method
from xaibench.registry import RegistryError

SCALARS = (int, float, bool, str)


class LibraryMethod(Method):
    """Base of methods computed by a library class: ``library`` is the distribution that defines
    it, ``library_class`` the class's name there."""

    library: ClassVar[str] = ""
    library_class: ClassVar[str] = ""

    @classmethod
    def library_identity(cls) -> dict[str, str]:
        """The library's distribution, version and class: part of the cells' keys."""
        return {"distribution": cls.library, "version": version_of(cls.library), "class": cls.library_class}


class LibrarySource:
    """What every library source shares (a method or metric source: :mod:`xaibench.registry`):
    its ``prefix`` in configs, the ``distribution`` that installs the library, a one-line
    ``description`` and the library's ``docs``; subclasses add ``names()`` and ``bind(name)``."""

    prefix: ClassVar[str] = ""
    distribution: ClassVar[str] = ""
    description: ClassVar[str] = ""
    docs: ClassVar[str] = ""
    kind: ClassVar[str] = "method"  # or "metric": what a name of the source is, in errors
    library: ClassVar[str] = ""  # the library's name in "... is not installed"
    lacks: ClassVar[str] = ""  # "<library> has no <kind of class>", the unknown-name error's start

    def names(self) -> list[str]:
        """The library's classes this source can bind (read without importing it; [] when it is
        not installed)."""
        raise NotImplementedError

    def check(self, name: str) -> None:
        """A one-line error unless the library is installed and ``name`` is one of :meth:`names`."""
        known = self.names()
        label = f"{self.kind} '{self.prefix}:{name}'"
        if not known:
            raise RegistryError(f"{label}: {self.library} is not installed (pip install {self.distribution})")
        if name not in known:
            raise RegistryError(f"unknown {label}: {self.lacks} {name!r}; {self.did_you_mean(name, known)}"
                                f"known classes: {', '.join(known)}")

    def version(self) -> str:
        """The library's installed version (from its metadata: nothing imported)."""
        return version_of(self.distribution)

    @staticmethod
    def did_you_mean(name: str, known: list[str]) -> str:
        """"did you mean A, B? " for the names of ``known`` close to ``name`` ("" when none is)."""
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        return f"did you mean {', '.join(close)}? " if close else ""


def version_of(distribution: str) -> str:
    """The installed version of ``distribution`` (from its metadata: nothing imported)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def toml_hint(annotation: Any) -> Any:
    """The part of a library's type hint that a TOML value can give (int, float, bool, str,
    Literal, tuples of those, optional), or None when no part can."""
    if annotation in SCALARS:
        return annotation
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return annotation
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        kept = [h for h in (toml_hint(a) for a in args if a is not type(None)) if h is not None]
        if not kept:
            return None
        if type(None) in args:
            kept.append(type(None))
        return kept[0] if len(kept) == 1 else typing.Union[tuple(kept)]  # noqa: UP007
    if origin is tuple:
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis and args[0] in SCALARS:
            return tuple[args[0], ...]
    return None


def hints_of(func: Any) -> dict[str, Any]:
    """A library function's type hints (empty where they cannot be resolved)."""
    try:
        return typing.get_type_hints(func)
    except Exception:
        return {}


def keyword_parameters(func: Any, skip: set[str]) -> dict[str, tuple[Any, Any]]:
    """name -> (hint, default) of the parameters of ``func`` a config can give: named ones outside
    ``skip`` whose hint has a TOML form (:func:`toml_hint`)."""
    hints, out = hints_of(func), {}
    for i, (name, p) in enumerate(inspect.signature(func).parameters.items()):
        if i == 0 or name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue  # self
        hint = toml_hint(hints.get(name, type(p.default) if p.default not in (None, p.empty) else None))
        if hint is None and p.default is p.empty:
            raise RegistryError(f"{func.__qualname__} needs {name!r}, which a config cannot give")
        if hint is not None:
            out[name] = (hint, p.default)
    return out


def bound_class(base: type, name: str, params: dict[str, tuple[Any, Any]], namespace: dict[str, Any]) -> type:
    """A subclass of ``base`` named ``name`` whose ``__init__`` takes exactly ``params`` (name ->
    (hint, default)) as keyword-only arguments and hands them, defaults filled in, to
    ``base.__init__``; ``namespace`` holds its class attributes (docstring, reduction, ...)."""

    def __init__(self: Any, **values: Any) -> None:
        unknown = sorted(set(values) - set(params))
        if unknown:
            raise TypeError(f"{name}() got unexpected keyword arguments {unknown}")
        missing = [k for k, (_, d) in params.items() if d is inspect.Parameter.empty and k not in values]
        if missing:
            raise TypeError(f"{name}() missing keyword arguments {missing}")
        base.__init__(self, **{k: values.get(k, d) for k, (_, d) in params.items()})

    __init__.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=h)
           for k, (h, d) in params.items()], return_annotation=None)
    __init__.__annotations__ = {k: h for k, (h, _) in params.items()} | {"return": None}
    __init__.__qualname__ = f"{name}.__init__"
    return type(name, (base,), {**namespace, "__init__": __init__, "__qualname__": name})
