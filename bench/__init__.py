"""xaibench: an explainability evaluation benchmark for image classifiers.

``xaibench.evaluate`` and ``xaibench.explain`` (:mod:`xaibench.api`) are imported on first use, so
``import xaibench`` (and the command line's quick checks) does not import torch.
"""

import importlib

__version__ = "0.1.0"
__all__ = ["evaluate", "explain"]


def __getattr__(name: str):
    if name in __all__:
        # imported by name, not by an import statement: the API imports the whole runner
        return getattr(importlib.import_module("xaibench.api"), name)
    raise AttributeError(f"module 'xaibench' has no attribute {name!r}")
