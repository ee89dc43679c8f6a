"""Image parameterization: plain pixels in [0, 1], initialised U(0, 1) per feature."""

from __future__ import annotations

import torch


def pixel_init(generators: list[torch.Generator], size: tuple[int, int]) -> torch.Tensor:
    """One ``(3, H, W)`` U(0, 1) image per generator, stacked: ``(B, 3, H, W)`` on the CPU."""
    return torch.stack([torch.rand(3, *size, generator=g) for g in generators])


def clamp_(images: torch.Tensor) -> None:
    with torch.no_grad():
        images.clamp_(0.0, 1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` in [0, 1] → ``(B, H, W, 3)`` uint8 (what is stored)."""
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)


def from_uint8(images: torch.Tensor) -> torch.Tensor:
    return images.permute(0, 3, 1, 2).float() / 255
