"""Objectives: a unit's activation averaged over patch tokens, and total variation."""

from __future__ import annotations

import torch


def unit_mean(acts: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """Mean over patch tokens of each row's own unit: ``(N, P, C)``, ``(N,)`` → ``(N,)``."""
    index = units.view(-1, 1, 1).expand(-1, acts.shape[1], 1)
    return acts.gather(2, index).squeeze(2).float().mean(dim=1)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Per image: L2 norms (over H, W) of horizontal, vertical and both diagonal differences,
    averaged over channels and summed over the four directions. ``(N, C, H, W)`` → ``(N,)``."""
    diffs = (
        x[..., :, 1:] - x[..., :, :-1],
        x[..., 1:, :] - x[..., :-1, :],
        x[..., 1:, 1:] - x[..., :-1, :-1],
        x[..., 1:, :-1] - x[..., :-1, 1:],
    )
    return sum(d.flatten(2).norm(dim=2).mean(dim=1) for d in diffs)


def tv_per_pixel(x: torch.Tensor) -> torch.Tensor:
    """Smoothness figure for reports: mean absolute neighbour difference per pixel, ``(N,)``."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    return (dx + dy) / 2
