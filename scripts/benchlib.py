"""Helpers shared by the benchmark scripts: device timing and the measured matmul peak."""

from __future__ import annotations

import time

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_dtype(device: torch.device) -> torch.dtype:
    """The dtype the pipeline computes in: bf16 (autocast) on CUDA, float32 elsewhere."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def matmul_peak(device: torch.device, dtype: torch.dtype | None = None, n: int = 4096,
                reps: int = 10) -> float:
    """Achieved FLOP/s of a large square matmul: this device's practical peak."""
    dtype = dtype or peak_dtype(device)
    if device.type == "cpu":
        n = min(n, 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t)
