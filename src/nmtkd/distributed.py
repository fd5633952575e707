"""Multi-process training context (torchrun / DistributedDataParallel); one process by default."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, value: Any) -> Any:
        """Rank 0's value on every rank (identity in a single process)."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's value, in rank order, on every rank."""
        if not self.enabled:
            return [value]
        values: list[Any] = [None] * self.world
        dist.all_gather_object(values, value)
        return values

    def sum(self, value: float) -> float:
        return self.sum_values({"value": value})["value"]

    def sum_values(self, values: dict[str, float]) -> dict[str, float]:
        """Each value summed over the ranks (one collective; keys the same on every rank)."""
        if not self.enabled:
            return values
        device = (torch.device("cuda", self.local_rank) if dist.get_backend() == "nccl"
                  else torch.device("cpu"))
        keys = sorted(values)
        tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return dict(zip(keys, tensor.tolist(), strict=True))

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def launched_by_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device_type: str) -> DistContext:
    """Join the process group torchrun set up; a plain single process gets the default context.

    Gradients are reduced with NCCL on GPUs and gloo on CPUs.
    """
    if not launched_by_torchrun():
        return DistContext()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    context = DistContext(rank=dist.get_rank(), world=dist.get_world_size(),
                          local_rank=int(os.environ["LOCAL_RANK"]))
    if device_type == "cuda":
        torch.cuda.set_device(context.local_rank)
    return context


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
