"""What a natural image of the atlas's dataset looks like: its mean amplitude spectrum and its
colour statistics, measured by the index (``pipeline.index.image_stats``) and used by the
Fourier and phase parameterizations.

Without a measured prior (``ImagePrior.natural``), the spectrum falls off as 1/f and the colours
are decorrelated with the ImageNet colour correlation that lucent publishes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipeline.index.image_stats import ImageStats

# lucent's square root of ImageNet's RGB colour covariance (rows: R, G, B).
IMAGENET_COLOUR_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))


def frequency_radius(size: tuple[int, int]) -> torch.Tensor:
    """``(H, W // 2 + 1)`` radial frequency (cycles per pixel) of each ``rfft2`` coefficient."""
    fy = torch.fft.fftfreq(size[0])[:, None]
    fx = torch.fft.rfftfreq(size[1])[None, :]
    return (fy**2 + fx**2).sqrt()


@dataclass(frozen=True)
class ImagePrior:
    """``spectrum`` (3, H, W//2+1) mean amplitude per channel; ``colour_mean`` (3,) and
    ``colour_cov`` (3, 3) of RGB pixels in [0, 1]."""

    spectrum: torch.Tensor
    colour_mean: torch.Tensor
    colour_cov: torch.Tensor
    source: str = "measured"

    @property
    def size(self) -> tuple[int, int]:
        return int(self.spectrum.shape[1]), 2 * (int(self.spectrum.shape[2]) - 1)

    @classmethod
    def natural(cls, size: tuple[int, int]) -> ImagePrior:
        """A generic prior: 1/f amplitude and ImageNet's colour covariance.

        >>> ImagePrior.natural((64, 64)).spectrum.shape
        torch.Size([3, 64, 33])
        """
        radius = frequency_radius(size).clamp(min=1.0 / max(size))
        spectrum = (1.0 / radius).expand(3, -1, -1).clone()
        sqrt = torch.tensor(IMAGENET_COLOUR_SQRT)
        return cls(spectrum, torch.full((3,), 0.45), sqrt @ sqrt.T, source="1/f, ImageNet colour")

    @classmethod
    def from_stats(cls, stats) -> ImagePrior:
        """From the index's ``DatasetImageStats`` (numpy arrays)."""
        return cls(torch.as_tensor(stats.spectrum, dtype=torch.float32),
                   torch.as_tensor(stats.colour_mean, dtype=torch.float32),
                   torch.as_tensor(stats.colour_cov, dtype=torch.float32))

    @classmethod
    def of_images(cls, images: torch.Tensor) -> ImagePrior:
        """Measured on ``images`` ``(N, 3, H, W)`` in [0, 1], as the index measures a dataset.

        >>> ImagePrior.of_images(torch.rand(4, 3, 16, 16)).size
        (16, 16)
        """
        stats = ImageStats(tuple(images.shape[2:]), limit=len(images))
        stats.update(images, np.arange(len(images)))
        return cls.from_stats(stats.result())

    def colour_sqrt(self) -> torch.Tensor:
        """The symmetric square root of the colour covariance, scaled so that its largest
        column has unit norm (lucent's normalization): maps decorrelated → RGB."""
        values, vectors = torch.linalg.eigh(self.colour_cov.double())
        sqrt = vectors @ torch.diag(values.clamp(min=1e-8).sqrt()) @ vectors.T
        return (sqrt / sqrt.norm(dim=0).max()).float()

    def amplitude(self) -> torch.Tensor:
        """``(H, W//2+1)`` channel-mean amplitude without the DC term, scaled so that unit
        complex coefficients give an image of unit standard deviation."""
        amp = self.spectrum.mean(0).clone()
        amp[0, 0] = 0.0
        return amp / amp.pow(2).mean().sqrt().clamp(min=1e-12)
