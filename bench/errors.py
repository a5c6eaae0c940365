"""The errors a user can meet, by layer: what the config check finds (:class:`ConfigError`, with a
plugin's :class:`ParamError` inside it), what fails while a run runs (:class:`RunError`, and its
kinds :class:`DataError` and :class:`ContractError`). The command line prints any of them as one
line, never a traceback."""

from __future__ import annotations


class ParamError(ValueError):
    """A hyperparameter with a wrong type or an out-of-range value.

    Args:
        key: the parameter's name.
        problem: what is wrong and what is allowed.
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class ConfigError(ValueError):
    """A config that cannot run: names the file, the key and what is allowed."""


class RunError(RuntimeError):
    """A run that cannot go on for a reason found while running (a checkpoint that no longer fits
    the model, a cache that is missing, a model that does not explain as configured): the message
    names the problem and the fix."""


class ContractError(RunError):
    """A plugin broke its contract at run time (e.g. a method left the model changed): the message
    says what, in plain words (:mod:`xaibench.check.guards`)."""


class DataError(RunError, ValueError):
    """Data on disk that cannot be loaded: the message names the file (or folder) and the fix.

    Raised by dataset plugins at load time (a missing, unreadable or truncated image, a mask of
    another size than its image, a label outside the class list, an empty class folder, ...).
    """
