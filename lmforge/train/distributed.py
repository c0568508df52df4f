"""Several processes or machines: ``torchrun`` + DistributedDataParallel, or FSDP2 (``fully_shard``).

Nothing home-made: ``torchrun --nproc_per_node N`` (add ``--nnodes/--rdzv-endpoint`` for several machines)
sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; :func:`init_distributed` joins the process group (gloo on CPU,
nccl on GPU) and :func:`wrap_model` wraps the model. Without those variables everything is one process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistContext:
    """Who this process is: ``rank`` of ``world`` processes, on ``device``."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this context joined the process group, so it leaves it in close()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1 and dist.is_initialized()

    def all_reduce_sum(self, tensor: torch.Tensor) -> None:
        if self.active:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)

    def gather_object(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order (the same list on every process)."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group this context joined. Without it, gloo's threads can still be running when the
        interpreter exits, and a process then aborts ("terminate called without an active exception")."""
        if self.owns_group and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
        self.owns_group = False

    @contextlib.contextmanager
    def grad_sync(self, model: nn.Module, enabled: bool) -> Iterator[None]:
        """Skip the gradient all-reduce on accumulation micro-batches but the last (it would be wasted)."""
        if enabled or not self.active:
            yield
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            with model.no_sync():
                yield
        elif hasattr(model, "set_requires_gradient_sync"):  # FSDP2
            model.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                model.set_requires_gradient_sync(True)
        else:
            yield


def init_distributed() -> DistContext:
    """Join the process group ``torchrun`` describes in the environment (once); else a one-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank=rank, world=world, local_rank=local_rank, device=device, owns_group=owns_group)


def _shard_units(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a model (the elements of its ``nn.ModuleList``s): FSDP2's unit of sharding."""
    return [block for m in model.modules() if isinstance(m, nn.ModuleList) for block in m]


def wrap_model(model: nn.Module, ctx: DistContext, fsdp: bool = False) -> nn.Module:
    """DDP (or FSDP2 when ``fsdp``) under torchrun; the model itself in one process.

    FSDP2 shards each transformer block, then the rest, in place: parameters become DTensors and each
    process keeps 1/world of every weight and optimizer state, gathering a block's weights just in time.
    """
    if not ctx.active:
        return model
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        for block in _shard_units(model):
            fully_shard(block)
        fully_shard(model)
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
