"""Object collectives for the index (no-ops in a single process): gather to rank 0 and
broadcast from it, over whatever process group torchrun set up (gloo on CPU)."""

from __future__ import annotations

from typing import Any

import torch.distributed as dist

from pipeline import distributed


def gather(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` in rank order on rank 0; None elsewhere."""
    if not distributed.is_distributed():
        return [obj]
    out = [None] * distributed.world_size() if distributed.is_main() else None
    dist.gather_object(obj, out, dst=0)
    return out


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not distributed.is_distributed():
        return obj
    box = [obj if distributed.is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
