"""Plugin parameters: a plugin's hyperparameters are the keyword-only arguments of its
``__init__`` with type hints; config values are checked against those hints (:func:`coerce`)
before a plugin is built (:func:`build`), and the plugin checks its ranges in ``__init__`` with
:func:`check_range` / :func:`check_choice`."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from typing import Any, Literal

from xaibench.errors import ParamError


def check_range(
    key: str, value: float, *, low: float | None = None, high: float | None = None
) -> None:
    """Raise ParamError unless ``low <= value <= high`` (either bound optional)."""
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ParamError(key, f"must be in [{lo}, {hi}], got {value!r}")


def check_choice(key: str, value: Any, choices: typing.Iterable[Any]) -> None:
    """Raise ParamError unless ``value`` is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise ParamError(key, f"must be one of {', '.join(map(repr, choices))}; got {value!r}")


# -- type checking of config values against type hints -----------------------------------------


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin in (tuple, list):
        return f"a list of {_describe(typing.get_args(hint)[0])}"
    if hint is type(None):
        return "none (omit the key)"
    return getattr(hint, "__name__", str(hint))


def coerce(key: str, value: Any, hint: Any) -> Any:
    """Check a TOML value against a type hint and return it in the hinted type.

    ints are accepted for floats; lists become tuples for ``tuple[X, ...]`` hints.

    Raises:
        ParamError: naming the key, the expected type and the value received.
    """
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin is Literal:
        check_choice(key, value, typing.get_args(hint))
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return coerce(key, value, option)
            except ParamError:
                continue
        raise ParamError(key, f"expected {_describe(hint)}, got {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ParamError(key, f"expected {_describe(hint)}, got {value!r}")
        (item,) = typing.get_args(hint)[:1]
        items = [coerce(key, v, item) for v in value]
        return tuple(items) if origin is tuple else items
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is type(None):
        if value is None:
            return value
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    raise ParamError(key, f"expected {_describe(hint)}, got {value!r}")


def parameters(cls: type) -> dict[str, tuple[Any, Any]]:
    """The keyword-only hyperparameters of ``cls``: name -> (type hint, default). A dataclass's
    hints are resolved per field in the module of the class that declares it (inherited
    settings, e.g. the perturbation engine's, keep their own module's names)."""
    hints = typing.get_type_hints(cls if dataclasses.is_dataclass(cls) else cls.__init__)
    params = {}
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if p.kind is inspect.Parameter.KEYWORD_ONLY:
            params[name] = (hints.get(name, Any), p.default)
    return params


def resolved(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Every declared parameter of ``cls`` with its value: the checked value from ``values``, or
    the default (for cache keys and manifests: defaults included, nothing listed by hand)."""
    return {key: coerce(key, values[key], hint) if key in values else default
            for key, (hint, default) in parameters(cls).items()}


def build(cls: type, values: dict[str, Any]) -> Any:
    """Instantiate ``cls`` from config values after checking names and types.

    Raises:
        ParamError: an unknown key (listing the allowed ones), a missing required key, a wrong
            type, or an out-of-range value reported by the plugin itself.
    """
    params = parameters(cls)
    for key in values:
        if key not in params:
            allowed = ", ".join(sorted(params)) or "(no parameters)"
            raise ParamError(key, f"unknown key; allowed keys: {allowed}")
    kwargs = {}
    for key, (hint, default) in params.items():
        if key in values:
            kwargs[key] = coerce(key, values[key], hint)
        elif default is inspect.Parameter.empty:
            raise ParamError(key, f"required key missing ({_describe(hint)})")
    return cls(**kwargs)
