"""Image parameterizations, lucent-style: plain pixels (the paper's) or a decorrelated Fourier
basis. Each maps its parameters to ``(B, 3, H, W)`` images in [0, 1]; every feature's init is
drawn from that feature's own generator."""

from __future__ import annotations

import torch

# Square root of ImageNet's colour correlation (lucid), columns normalised to max norm 1.
_COLOUR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOUR_SQRT = _COLOUR_SQRT / _COLOUR_SQRT.norm(dim=0).max()


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


class FourierParam:
    """Spectrum scaled by 1/frequency, inverse FFT, colour decorrelation, sigmoid. The 1/f
    scaling preconditions the optimizer towards smooth images (Olah et al., Distill 2017)."""

    def __init__(self, generators: list[torch.Generator], size: tuple[int, int],
                 device: torch.device, decay: float = 1.0, init_std: float = 0.01):
        h, w = size
        fy = torch.fft.fftfreq(h)[:, None]
        fx = torch.fft.rfftfreq(w)[None, :]
        freqs = (fx**2 + fy**2).sqrt()
        self.scale = (1.0 / freqs.clamp(min=1.0 / max(h, w)) ** decay).to(device)
        self.size = size
        init = torch.stack([torch.randn(3, h, w // 2 + 1, 2, generator=g) * init_std
                            for g in generators])
        self.spectrum = init.to(device).requires_grad_(True)
        self.colour = _COLOUR_SQRT.to(device)

    def parameters(self) -> list[torch.Tensor]:
        return [self.spectrum]

    def image(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        x = torch.fft.irfft2(spectrum, s=self.size, norm="ortho") / 4.0
        x = torch.einsum("ij,bjhw->bihw", self.colour, x)
        return torch.sigmoid(x)

    def after_step(self) -> None:
        pass


PARAMS = {"pixel": PixelParam, "fourier": FourierParam}


def pixel_init(generators: list[torch.Generator], size: tuple[int, int]) -> torch.Tensor:
    """The pixel parameterization's initial images (CPU), for reports and tests."""
    return PixelParam(generators, size, torch.device("cpu")).image().detach()


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` in [0, 1] → ``(B, H, W, 3)`` uint8 (what is stored)."""
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)


def from_uint8(images: torch.Tensor) -> torch.Tensor:
    return images.permute(0, 3, 1, 2).float() / 255
