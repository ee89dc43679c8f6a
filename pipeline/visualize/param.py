"""Image parameterizations, lucent-style: each holds one image per feature, initialised from
that feature's own generator, and maps its parameters to RGB images in [0, 1].

- ``pixels``: the paper's plain pixels, init U(0, 1), clamped after every step;
- ``fourier``: lucent's Fourier basis, coefficients scaled by the dataset's amplitude spectrum,
  colours decorrelated with the dataset's colour covariance, then a sigmoid;
- ``phase``: MACO's magnitude-constrained phase: the amplitude is fixed to the dataset's mean
  spectrum, only the phase is optimized; standardized, colour-recorrelated, sigmoid.
- ``maco``: MACO as its reference implementation (Horama) computes it: the phase, drawn
  N(0, 1), is standardized before it meets the fixed amplitude, and the image is standardized
  over all its channels at once (``phase``: phase U(-π, π) used as is, each channel
  standardized alone). Both use the dataset's channel-mean spectrum and colours where Horama
  uses ImageNet's per-channel spectrum of decorrelated colours and its colour matrix, and a
  sigmoid around the dataset's mean colour where Horama's spans the model's whole input range.

``PARAMETERIZATIONS[name](generators, size, device, prior, **options)`` builds one, with the
recipe's ``param_options()``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from pipeline.visualize.prior import ImagePrior


class PixelParam:
    """The paper's: pixels in [0, 1], init U(0, 1), clamped after every step."""

    def __init__(self, generators: list[torch.Generator], size: tuple[int, int],
                 device: torch.device, prior: ImagePrior | None = None):
        init = torch.stack([torch.rand(3, *size, generator=g) for g in generators])
        self.pixels = init.to(device).requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.pixels]

    def image(self) -> torch.Tensor:
        return self.pixels

    def after_step(self) -> None:
        with torch.no_grad():
            self.pixels.clamp_(0.0, 1.0)


class _SpectralParam:
    """Shared by the Fourier and phase parameterizations: decorrelated → RGB → sigmoid."""

    def __init__(self, size: tuple[int, int], device: torch.device, prior: ImagePrior | None,
                 dc: float = 0.0, spectrum_power: float = 1.0):
        prior = ImagePrior.natural(size) if prior is None else prior.at_size(size)
        self.size = tuple(size)
        self.amplitude = prior.amplitude(dc, spectrum_power).to(device)  # (H, W//2+1)
        self.colour = prior.colour_sqrt().to(device)  # (3, 3)
        mean = prior.colour_mean.clamp(0.05, 0.95)
        self.centre = torch.logit(mean).to(device).view(1, 3, 1, 1)

    def _to_rgb(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` decorrelated values → RGB in (0, 1)."""
        rgb = torch.einsum("ij,bjhw->bihw", self.colour, x)
        return torch.sigmoid(rgb + self.centre)

    def after_step(self) -> None:
        pass


class FourierParam(_SpectralParam):
    """lucent's Fourier basis, with the dataset's spectrum in place of 1/f; ``dc`` > 0 lets
    the image's mean colour move and ``spectrum_power`` < 1 flattens the spectrum's scale
    (``ImagePrior.amplitude``)."""

    def __init__(self, generators: list[torch.Generator], size: tuple[int, int],
                 device: torch.device, prior: ImagePrior | None = None, init_std: float = 0.01,
                 dc: float = 0.0, spectrum_power: float = 1.0):
        super().__init__(size, device, prior, dc, spectrum_power)
        shape = (3, size[0], size[1] // 2 + 1, 2)
        init = torch.stack([torch.randn(*shape, generator=g) * init_std for g in generators])
        self.coefficients = init.to(device).requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.coefficients]

    def image(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.coefficients) * self.amplitude
        x = torch.fft.irfft2(spectrum, s=self.size, norm="ortho")
        return self._to_rgb(x * 4.0)


class PhaseParam(_SpectralParam):
    """MACO (Fel et al. 2023): fixed amplitude, optimized phase, init U(-π, π)."""

    def __init__(self, generators: list[torch.Generator], size: tuple[int, int],
                 device: torch.device, prior: ImagePrior | None = None):
        super().__init__(size, device, prior)
        shape = (3, size[0], size[1] // 2 + 1)
        init = torch.stack([(torch.rand(*shape, generator=g) * 2 - 1) * torch.pi
                            for g in generators])
        self.phase = init.to(device).requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.phase]

    def image(self) -> torch.Tensor:
        spectrum = torch.polar(self.amplitude.expand_as(self.phase), self.phase)
        x = torch.fft.irfft2(spectrum, s=self.size, norm="ortho")
        x = (x - x.mean(dim=(2, 3), keepdim=True)) / x.std(dim=(2, 3), keepdim=True).clamp(1e-6)
        return self._to_rgb(x)


class MacoParam(_SpectralParam):
    """MACO as Horama computes it: phase init N(0, 1), standardized (per image) before use;
    fixed amplitude; the image standardized over its channels and pixels together."""

    def __init__(self, generators: list[torch.Generator], size: tuple[int, int],
                 device: torch.device, prior: ImagePrior | None = None):
        super().__init__(size, device, prior)
        shape = (3, size[0], size[1] // 2 + 1)
        init = torch.stack([torch.randn(*shape, generator=g) for g in generators])
        self.phase = init.to(device).requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.phase]

    @staticmethod
    def _standardize(x: torch.Tensor) -> torch.Tensor:
        """Each item of the batch to mean 0, std 1 over all its values (Horama's, per image)."""
        dims = tuple(range(1, x.dim()))
        return (x - x.mean(dim=dims, keepdim=True)) / (x.std(dim=dims, keepdim=True) + 1e-4)

    def image(self) -> torch.Tensor:
        phase = self._standardize(self.phase)
        spectrum = torch.polar(self.amplitude.expand_as(phase), phase)
        x = torch.fft.irfft2(spectrum, s=self.size, norm="ortho")
        return self._to_rgb(self._standardize(x))


Parameterization = PixelParam | FourierParam | PhaseParam | MacoParam

PARAMETERIZATIONS: dict[str, Callable[..., Parameterization]] = {
    "pixels": PixelParam, "fourier": FourierParam, "phase": PhaseParam, "maco": MacoParam,
}


def initial_images(name: str, generators: list[torch.Generator], size: tuple[int, int],
                   prior: ImagePrior | None = None, **options: float) -> torch.Tensor:
    """A parameterization's initial images (CPU), for reports and tests.

    >>> gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    >>> initial_images("fourier", gens, (32, 32)).shape
    torch.Size([2, 3, 32, 32])
    """
    with torch.no_grad():
        return PARAMETERIZATIONS[name](generators, size, torch.device("cpu"), prior,
                                       **options).image()


def pixel_init(generators: list[torch.Generator], size: tuple[int, int]) -> torch.Tensor:
    """The pixel parameterization's initial images (CPU)."""
    return initial_images("pixels", generators, size).detach()


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` in [0, 1] → ``(B, H, W, 3)`` uint8 (what is stored)."""
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)


def from_uint8(images: torch.Tensor) -> torch.Tensor:
    return images.permute(0, 3, 1, 2).float() / 255
