"""torch.distributed helpers: rank/world from torchrun's environment, sharding, barriers.

A plain ``python -m pipeline`` run is rank 0 of a world of 1. Under ``torchrun`` the process
group is initialised from the environment (gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from pipeline.errors import AtlasError

T = TypeVar("T")


def _timeout() -> timedelta:
    """Ranks wait for each other at the end of a stage, and rank 0 merges and writes the index
    and the site while the others wait: far longer than NCCL's 10-minute default on a big
    model. ``VIT_ATLAS_DIST_TIMEOUT_H`` (hours, default 6) overrides it."""
    raw = os.environ.get("VIT_ATLAS_DIST_TIMEOUT_H", "6")
    try:
        hours = float(raw)
    except ValueError:
        hours = -1.0
    if not hours > 0:
        raise AtlasError(f"VIT_ATLAS_DIST_TIMEOUT_H must be a positive number of hours, "
                         f"not '{raw}'")
    return timedelta(hours=hours)


def init_from_env() -> None:
    """Join the process group torchrun describes; no-op for a single process."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if dist.is_available() and not dist.is_initialized() and world > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend=backend, timeout=_timeout())


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shard(items: Sequence[T], rank_: int | None = None, world: int | None = None) -> list[T]:
    """Round-robin share of ``items`` for this rank (deterministic, covers everything once)."""
    r = rank() if rank_ is None else rank_
    w = world_size() if world is None else world
    return list(items[r::w])


def gather(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` (picklable) in rank order on rank 0; None elsewhere."""
    if not is_distributed():
        return [obj]
    out = [None] * world_size() if is_main() else None
    dist.gather_object(obj, out, dst=0)
    return out


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` (picklable) on every rank."""
    if not is_distributed():
        return obj
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
