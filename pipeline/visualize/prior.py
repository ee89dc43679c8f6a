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
import torch.nn.functional as F

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

    def at_size(self, size: tuple[int, int]) -> ImagePrior:
        """The same prior for images of ``size`` (a MACO canvas larger than the model input):
        the amplitude spectrum sampled at the new grid's frequencies in cycles per pixel
        (bilinear; Horama resizes its magnitude template the same way), and 1/f from the
        lowest measured frequency down, where the larger grid has frequencies the measured
        one lacks. Colours are unchanged.

        >>> prior = ImagePrior.of_images(torch.rand(4, 3, 16, 16))
        >>> prior.at_size((32, 32)).size, prior.at_size((16, 16)) is prior
        ((32, 32), True)
        """
        size = (int(size[0]), int(size[1]))
        if size == self.size:
            return self
        h, w = self.size
        spectrum = self.spectrum.clone()
        lowest = 1.0 / max(h, w)
        ring = frequency_radius((h, w)) == lowest
        first = spectrum[:, ring].mean(1)  # (3,) amplitude at the lowest frequency
        spectrum[:, 0, 0] = first  # no DC in the interpolation
        shifted = torch.fft.fftshift(spectrum, dim=1)  # rows: frequency (j - h // 2) / h
        fy = torch.fft.fftfreq(size[0])[:, None].expand(-1, size[1] // 2 + 1)
        fx = torch.fft.rfftfreq(size[1])[None, :].expand(size[0], -1)
        rows, cols = fy * h + h // 2, fx * w
        grid = torch.stack([cols / (spectrum.shape[2] - 1) * 2 - 1,
                            rows / (h - 1) * 2 - 1], -1)[None]
        sampled = F.grid_sample(shifted[None], grid, mode="bilinear", padding_mode="border",
                                align_corners=True)[0]
        radius = frequency_radius(size)
        low = radius < lowest
        sampled[:, low] = first[:, None] * lowest / radius[low].clamp(min=1e-12)
        sampled[:, 0, 0] = self.spectrum[:, 0, 0] * (size[0] * size[1]) / (h * w)
        return ImagePrior(sampled, self.colour_mean, self.colour_cov,
                          source=f"{self.source}, resized to {size[0]}x{size[1]}")

    def colour_sqrt(self) -> torch.Tensor:
        """The symmetric square root of the colour covariance, scaled so that its largest
        column has unit norm (lucent's normalization): maps decorrelated → RGB."""
        values, vectors = torch.linalg.eigh(self.colour_cov.double())
        sqrt = vectors @ torch.diag(values.clamp(min=1e-8).sqrt()) @ vectors.T
        return (sqrt / sqrt.norm(dim=0).max()).float()

    def amplitude(self, dc: float = 0.0, power: float = 1.0) -> torch.Tensor:
        """``(H, W//2+1)`` channel-mean amplitude to the ``power`` (< 1: flatter), scaled so
        that unit complex coefficients give an image of unit standard deviation. The DC term
        (the image's mean) is ``dc`` times the mean amplitude of the lowest frequency (one
        cycle per image), after that scaling: 0 leaves no DC term, so the image's mean colour
        cannot move.

        >>> prior = ImagePrior.natural((16, 16))
        >>> float(prior.amplitude()[0, 0]), bool(prior.amplitude(1.0)[0, 0] > 0)
        (0.0, True)
        >>> a, flat = prior.amplitude(), prior.amplitude(power=0.5)
        >>> bool(flat.max() / flat[flat > 0].min() < a.max() / a[a > 0].min())
        True
        """
        amp = self.spectrum.mean(0).clone().pow(power)
        amp[0, 0] = 0.0
        amp = amp / amp.pow(2).mean().sqrt().clamp(min=1e-12)
        if dc:
            lowest = frequency_radius(self.size) == 1.0 / max(self.size)
            amp[0, 0] = dc * amp[lowest].mean()
        return amp
