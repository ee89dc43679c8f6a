"""Image parameterization, lucent-style: plain pixels in [0, 1] (the paper's), one image per
feature, each initialised from that feature's own generator. (A decorrelated Fourier basis was
tried and dropped: smoother, but a lower objective at equal steps.)"""

from __future__ import annotations

import torch


class PixelParam:
    """The paper's: pixels in [0, 1], init U(0, 1), clamped after every step."""

    def __init__(self, generators: list[torch.Generator], size: tuple[int, int],
                 device: torch.device):
        init = torch.stack([torch.rand(3, *size, generator=g) for g in generators])
        self.pixels = init.to(device).requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.pixels]

    def image(self) -> torch.Tensor:
        return self.pixels

    def after_step(self) -> None:
        with torch.no_grad():
            self.pixels.clamp_(0.0, 1.0)


def pixel_init(generators: list[torch.Generator], size: tuple[int, int]) -> torch.Tensor:
    """The pixel parameterization's initial images (CPU), for reports and tests."""
    return PixelParam(generators, size, torch.device("cpu")).image().detach()


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` in [0, 1] → ``(B, H, W, 3)`` uint8 (what is stored)."""
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)


def from_uint8(images: torch.Tensor) -> torch.Tensor:
    return images.permute(0, 3, 1, 2).float() / 255
