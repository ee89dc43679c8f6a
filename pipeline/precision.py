"""The one place that decides the compute precision: bf16 autocast on CUDA, float32 elsewhere."""

from __future__ import annotations

import contextlib

import torch


def autocast(device: torch.device):
    """A context manager: bf16 autocast on CUDA, a no-op on other devices.

    >>> with autocast(torch.device("cpu")):
    ...     (torch.ones(2) * 2).dtype
    torch.float32
    """
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
