"""Sharded execution on torch.distributed: who owns which test-image shard, and the collectives.

Under ``torchrun`` (WORLD_SIZE > 1 in the environment) every process joins one process group
(gloo on CPU, NCCL on CUDA). Rank 0 prepares the data and trains the models; every rank explains
and scores the test-image shards it owns (shard i belongs to rank i mod world size); the results
are gathered on rank 0, which writes the outputs. In one process the same code runs with a world
of one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the run's processes."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def owns(self, shard: int) -> bool:
        """Whether this process explains and scores test-image shard ``shard``."""
        return shard % self.size == self.rank

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` on rank 0 (in rank order); None on the other ranks."""
        if self.size == 1:
            return [obj]
        out: list[Any] | None = [None] * self.size if self.main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.size == 1:
            return obj
        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def join(device: str) -> World:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), else a world of one.

    Training runs on rank 0 while the others wait, so the group's timeout is long; torchrun
    stops every process when one of them dies.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not dist.is_initialized():
        cuda = device.startswith("cuda")
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(days=1))
    return World(rank=dist.get_rank(), size=dist.get_world_size())


def leave(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
