"""torch held back while the command line checks a config, so its errors come before torch is imported.

After :func:`defer` (the command line calls it first), an ``import torch`` run inside a
:func:`held_back` block binds a deferred module, like ``importlib.util.LazyLoader``'s: a
plugin module whose only module-level use of torch is ``import torch`` imports in milliseconds,
and its class can be built and checked. Touching the deferred module inside the block raises
:class:`TorchNeeded` (the config check then leaves that plugin to its full check, with torch);
leaving the block normally executes torch in place, so no deferred module outlives the block and
every later import (``import torch.nn`` included) is an ordinary one. Leaving it by an exception
(an error to report) does not: the command line reports it and exits, torch never imported.

Only the top-level ``torch`` is deferred: ``import torch.nn`` or ``from torch import nn`` at a
module's level needs torch itself, so such a module raises :class:`TorchNeeded` when imported
inside the block.
"""

from __future__ import annotations

import importlib.abc
import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.machinery import ModuleSpec

DEFERRED = ("torch",)
# read without executing the module (e.g. ``inspect.getmodule`` reads __file__ of every module);
# not __path__: an import of a submodule reads it, and needs the package executed first
_METADATA = frozenset({"__class__", "__spec__", "__name__", "__file__", "__loader__", "__package__",
                       "__cached__"})
_lock = threading.RLock()
_held = 0


class TorchNeeded(BaseException):
    """A deferred module was touched inside :func:`held_back`. A BaseException, so that no
    ``except Exception`` between the touch and the block's owner swallows it."""


def defer() -> None:
    """Defer ``import torch`` inside :func:`held_back` blocks, from now on (idempotent)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def executed(name: str = "torch") -> bool:
    """Whether module ``name`` has been imported and executed (not merely deferred)."""
    module = sys.modules.get(name)
    return module is not None and type(module) is not _Deferred


@contextmanager
def held_back(*, execute: bool = True) -> Iterator[None]:
    """Within this block ``import torch`` is deferred (after :func:`defer`) and touching a deferred
    module raises :class:`TorchNeeded`. On a normal exit from the outermost block the deferred
    modules are executed, unless ``execute`` is False: then the caller must end the process
    without importing torch, or call :func:`execute_deferred` before it does."""
    global _held
    with _lock:
        _held += 1
    try:
        yield
    finally:
        with _lock:
            _held -= 1
    if execute and not _held:
        execute_deferred()


def execute_deferred() -> None:
    """Execute every deferred module now (outside any import, so a package's own imports of its
    submodules run in their usual order)."""
    for name in DEFERRED:
        module = sys.modules.get(name)
        if type(module) is _Deferred:
            _execute(module)


def _execute(module: types.ModuleType) -> None:
    with _lock:
        if type(module) is _Deferred:  # not executed by another thread meanwhile
            spec = object.__getattribute__(module, "__spec__")
            if _held:
                raise TorchNeeded(f"{spec.name} is needed here")
            module.__class__ = types.ModuleType
            spec.loader.exec_module(module)


class _Deferred(types.ModuleType):
    def __getattribute__(self, attr: str):
        if attr in _METADATA:
            return object.__getattribute__(self, attr)
        _execute(self)
        return getattr(self, attr)

    def __delattr__(self, attr: str) -> None:
        _execute(self)
        delattr(self, attr)


class _Loader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: ModuleSpec) -> types.ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__spec__.loader = module.__loader__ = self.loader  # what executes it later
        module.__class__ = _Deferred


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path=None, target=None) -> ModuleSpec | None:
        if name not in DEFERRED or not _held:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is None or not hasattr(spec.loader, "exec_module"):
                    return None
                spec.loader = _Loader(spec.loader)
                return spec
        return None
