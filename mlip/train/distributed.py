"""Process group set-up for ``torchrun`` (DDP): gloo on the CPU, nccl on CUDA; a no-op for one process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Context:
    """This process's place in the run and the device it computes on."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum of ``tensor`` over processes (a copy; CPU tensors are moved through the device if nccl)."""
        if self.world_size == 1:
            return tensor.clone()
        import torch.distributed as dist

        out = tensor.to(self.device).clone()
        dist.all_reduce(out)
        return out.to(tensor.device)

    def barrier(self) -> None:
        """Wait for every process (e.g. until the main one has written a checkpoint)."""
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every process if ``flag`` is true on any (e.g. a time limit seen by one)."""
        return bool(self.all_reduce_sum(torch.tensor([float(flag)])).item() > 0)


def choose_device(name: str, local_rank: int) -> torch.device:
    """``"auto"``: ``cuda:<local_rank>`` when CUDA is available, else the CPU."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def setup(device_name: str) -> Context:
    """Join the ``torchrun`` process group (``WORLD_SIZE`` > 1) or run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = choose_device(device_name, int(os.environ.get("LOCAL_RANK", "0")))
    if world_size > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Context(rank=rank, world_size=world_size, device=device)


def teardown(ctx: Context) -> None:
    """Leave the process group."""
    if ctx.world_size > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
