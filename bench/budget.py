"""The run's memory budget: how many inputs a method or metric pushes through the model at once.

``[run] memory`` is a size ("2GiB", "512MiB", "1.5GB") or "auto": on CUDA half the device's free
memory, on the CPU half the available RAM (Linux's ``MemAvailable``), read once when the run
starts (:data:`AUTO_SHARE`). The executor makes it the current budget for the whole run
(:func:`limited`); a method or metric that evaluates many perturbations or integration steps asks
:func:`rows_that_fit` how many inputs one forward pass may take, and splits its batch, its
perturbations or its steps into chunks of at most that many. The budget only ever changes that
chunking, never what is computed, so it is not part of any cache key: a run resumed with another
budget reuses its cache.

The bytes one input costs are estimated, not measured by the allocator (so the estimate is the
same on every device): one probe forward of a single input records the size of every leaf
module's output; without gradients an input costs its own size plus three times the largest
activation (the live input, output and a skip connection of the widest layer), with gradients
twice its size plus every activation (saved for the backward pass) plus twice the largest (the
gradients flowing back). The model's weights and the batch of images already on the device are
not counted: the budget is for the work on top of them. The probe's forward is not counted in a
cell's costs (:func:`probing`).

Outside a run (a plugin called from Python, the contract tests) there is no budget and every
plugin uses its own batch parameter unchanged.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xaibench.errors import ParamError, RunError

if TYPE_CHECKING:
    import torch

AUTO_SHARE = 0.5  # "auto": this share of the free device memory (CUDA) or available RAM (CPU)
UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
         "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B)\s*$", re.IGNORECASE)


class BudgetError(RunError):
    """One input (or the fewest a plugin must evaluate together) does not fit the budget."""


@dataclass(frozen=True)
class Budget:
    """A memory budget in bytes and the setting it came from (for messages)."""

    nbytes: int
    setting: str


def parse_memory(text: str) -> int | None:
    """Bytes of a ``[run] memory`` setting ("2GiB", "512MiB", "1.5GB", "1000000B"); None for
    "auto". Raises ParamError (key "memory") for anything else or a size under 1 MiB."""
    if text == "auto":
        return None
    match = _SIZE.match(text) if isinstance(text, str) else None
    if match is None or match.group(2).upper() not in UNITS:
        raise ParamError("memory", f"must be 'auto' or a size such as '2GiB', '512MiB' or '1.5GB', "
                                   f"got {text!r}")
    nbytes = int(float(match.group(1)) * UNITS[match.group(2).upper()])
    if nbytes < 2**20:
        raise ParamError("memory", f"must be at least 1MiB, got {text!r}")
    return nbytes


def available_bytes(device: torch.device) -> int | None:
    """Free memory of a CUDA device, or the RAM available on this machine (None where unknown)."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            found = next((line for line in f if line.startswith("MemAvailable:")), None)
        return int(found.split()[1]) * 1024 if found else None
    except OSError:
        return None


def resolve(setting: str, device: torch.device) -> Budget | None:
    """The budget of a ``[run] memory`` setting on ``device`` (None: "auto" where the free memory
    is unknown, i.e. no budget)."""
    nbytes = parse_memory(setting)
    if nbytes is None:
        free = available_bytes(device)
        if free is None:
            return None
        return Budget(int(free * AUTO_SHARE), f"'auto' ({AUTO_SHARE:.0%} of {free / 2**30:.1f} GiB free)")
    return Budget(nbytes, repr(setting))


_CURRENT: ContextVar[Budget | None] = ContextVar("xaibench_budget", default=None)
_PROBING: ContextVar[bool] = ContextVar("xaibench_budget_probing", default=False)


@contextmanager
def limited(budget: Budget | None) -> Iterator[None]:
    """Make ``budget`` the current one for the block (None: no budget)."""
    token = _CURRENT.set(budget)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current() -> Budget | None:
    """The budget of the run being executed, or None."""
    return _CURRENT.get()


def probing() -> bool:
    """Whether the model's forward now is the footprint probe (not counted in costs)."""
    return _PROBING.get()


def _nbytes(value: object) -> int:
    import torch

    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    return 0


_FOOTPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def bytes_per_input(model: torch.nn.Module, sample: torch.Tensor, *, grad: bool) -> int:
    """Estimated bytes one input like ``sample`` [1, ...] costs in a forward pass (``grad``: and
    its backward pass) of ``model`` (module docstring). One probe forward per model, input shape
    and device, remembered while the model lives, in eval mode; forward hooks only, removed
    afterwards. A TorchScript module takes no hooks: only its output is counted."""
    import torch

    from xaibench.models.modelstate import eval_mode

    key = (tuple(sample.shape[1:]), sample.dtype, sample.device.type)
    known = _FOOTPRINTS.setdefault(model, {})
    if key not in known:
        sizes: list[int] = []
        module = isinstance(model, torch.nn.Module)  # a plain callable: its output only
        leaves = [m for m in model.modules() if not any(True for _ in m.children())
                  and not isinstance(m, torch.jit.ScriptModule)] if module else []  # no hooks there
        handles = [m.register_forward_hook(lambda _m, _i, out: sizes.append(_nbytes(out)))
                   for m in leaves]
        token = _PROBING.set(True)
        try:
            # in eval mode: a model in train mode keeps its batch-norm statistics
            with eval_mode(model) if module else nullcontext(), torch.no_grad():
                sizes.append(_nbytes(model(sample[:1])))
        finally:
            _PROBING.reset(token)
            for h in handles:
                h.remove()
        known[key] = (sum(sizes), max(sizes))
    total, widest = known[key]
    own = _nbytes(sample[:1])
    return 2 * own + total + 2 * widest if grad else own + 3 * widest


def rows_that_fit(model: torch.nn.Module, sample: torch.Tensor, *, grad: bool, wanted: int, what: str,
                  least: int = 1, extra_per_row: int = 0, own: str | None = None) -> int:
    """The most inputs like ``sample`` [1, ...] per forward pass: ``wanted`` (the plugin's own
    batch parameter), lowered to what the current budget allows; never below ``least`` (the
    fewest the plugin must evaluate together, e.g. one perturbation of every image of the batch).

    Args:
        extra_per_row: bytes the plugin itself holds per input besides the model's footprint.
        what: the plugin, for the message; own: the setting that lowers ``least`` (e.g.
            "[run] batch_size"), named in the message beside ``[run] memory``.

    Raises:
        BudgetError: ``least`` inputs do not fit the budget.
    """
    budget = current()
    if budget is None:
        return wanted
    per_row = bytes_per_input(model, sample, grad=grad) + extra_per_row
    fit = budget.nbytes // per_row
    if fit < least:
        count = "one input" if least == 1 else f"{least} inputs (one per image of the batch)"
        lower = f" or lower {own}" if own else ""
        raise BudgetError(f"{what}: {count} of shape {tuple(sample.shape[1:])} need about "
                          f"{least * per_row / 2**20:.1f} MiB{' with gradients' if grad else ''}, more "
                          f"than [run] memory = {budget.setting} ({budget.nbytes / 2**20:.1f} MiB); "
                          f"raise [run] memory{lower}")
    return max(least, min(wanted, fit))
