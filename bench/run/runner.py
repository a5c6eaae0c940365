"""Run an experiment: plan, execute, write.

1. :func:`xaibench.run.plan.plan` lays the checked config out as cells (data, model, explain, score),
   each keyed by a hash of everything that determines it (:mod:`xaibench.keys`); pure.
2. :func:`xaibench.run.execute.execute` computes the cells that are not cached (sharded over the
   processes of a torchrun launch) and returns typed results.
3. :func:`xaibench.run.writer.write` writes the tables and the manifest (rank 0).

All checking happens in :mod:`xaibench.config` before this module does any work. The report is
drawn from the written folder by the caller (:func:`xaibench.report.render.render`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from xaibench.config import Config
from xaibench.run import distributed
from xaibench.run.determinism import deterministic_cuda
from xaibench.run.execute import cell_status, execute, interruptible, torch_device
from xaibench.run.meta import run_meta
from xaibench.run.plan import Plan, plan
from xaibench.run.writer import leaderboard, write


@dataclass
class RunResult:
    """Where a run wrote its outputs (rank 0; None elsewhere), and what it did."""

    run_dir: Path
    leaderboard: object  # pandas.DataFrame, or None on ranks other than 0
    timings: dict[str, float] = field(default_factory=dict)
    cells: dict[str, dict] = field(default_factory=dict)  # name -> {computed, ...}
    plan: Plan | None = None


def run(config: Config, *, progress: bool = True, write_outputs: bool = True) -> RunResult:
    """Run ``config`` end to end, reusing every cached cell, and write its outputs (with
    ``write_outputs`` False: only the caches, and the leaderboard is returned)."""
    the_plan = plan(config)
    threads = torch.get_num_threads()  # the run's setting holds for the run only
    torch.set_num_threads(the_plan.threads)
    world = distributed.join(the_plan.device)
    try:
        with interruptible(), deterministic_cuda(the_plan.device):
            start = time.perf_counter()
            results = execute(the_plan, world, progress=progress and world.main)
            if world.main and config.meta is not None:  # the meta-evaluation, on the main process
                meta_start = time.perf_counter()
                results.meta = run_meta(the_plan, results, torch_device(the_plan, world))
                results.timings["meta_s"] = time.perf_counter() - meta_start
            timings = {**results.timings, "total_s": time.perf_counter() - start}
            board = None
            if world.main:
                board = (write(the_plan, results, timings, world_size=world.size) if write_outputs
                         else leaderboard(the_plan, results))
            world.barrier()
    finally:
        distributed.leave(world)
        torch.set_num_threads(threads)
    return RunResult(the_plan.run_dir, board, timings, cell_status(results), the_plan)
