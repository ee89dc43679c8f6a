"""Image statistics of the dataset, measured during the index scan: the mean amplitude
spectrum and the RGB mean and covariance of the first ``n`` examples at the model's input
size (what the Fourier and MACO parameterizations and the spectral-naturalness metric need).

``amplitude_spectrum`` is the one definition of the spectrum; ``ImageStats`` streams it
with float64 sums that checkpoint with the scan state and merge across ranks by summing,
so the result is the same whatever the batch size, sharding or interruptions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pipeline.index.results import DatasetImageStats

DEFAULT_STATS_IMAGES = 1024


def amplitude_spectrum(images: torch.Tensor) -> torch.Tensor:
    """``|rfft2|`` with orthonormal scaling of images ``(N, 3, H, W)`` in [0, 1]:
    ``(N, 3, H, W//2+1)``, the zero frequency at ``[..., 0, 0]``.

    >>> amplitude_spectrum(torch.ones(1, 3, 4, 4))[0, 0]  # a constant: DC only, = 4·1
    tensor([[4., 0., 0.],
            [0., 0., 0.],
            [0., 0., 0.],
            [0., 0., 0.]])
    """
    return torch.fft.rfft2(images, norm="ortho").abs()


def unnormalize(pixels: torch.Tensor, mean: Sequence[float],
                std: Sequence[float]) -> torch.Tensor:
    """Undo the eval transform's ``(x - mean) / std``: ``(N, 3, H, W)`` back in [0, 1].

    >>> unnormalize(torch.zeros(1, 3, 1, 1), (0.5, 0.5, 0.5), (0.2, 0.2, 0.2)).flatten()
    tensor([0.5000, 0.5000, 0.5000])
    """
    m = torch.as_tensor(mean, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    return (pixels * s + m).clamp_(0.0, 1.0)


class ImageStats:
    """Streaming sums over the examples numbered below ``limit``, images ``size`` = (H, W).

    >>> s = ImageStats((8, 8), limit=2)
    >>> s.update(torch.rand(3, 3, 8, 8), np.arange(3))  # example 2 is past the limit
    >>> r = s.result()
    >>> r.count, r.spectrum.shape, r.colour_cov.shape
    (2, (3, 8, 5), (3, 3))
    """

    def __init__(self, size: tuple[int, int], limit: int = DEFAULT_STATS_IMAGES):
        self.size, self.limit = (int(size[0]), int(size[1])), max(0, int(limit))
        h, w = self.size
        self.spectrum_sum = np.zeros((3, h, w // 2 + 1), dtype=np.float64)
        self.pixel_sum = np.zeros(3, dtype=np.float64)  # sum of RGB over all pixels
        self.outer_sum = np.zeros((3, 3), dtype=np.float64)  # sum of rgb · rgbᵀ
        self.count = 0  # images
        self.pixels = 0  # pixels (images × H × W)

    def wants(self, numbers: np.ndarray) -> np.ndarray:
        """Mask of the example ``numbers`` that are measured."""
        return np.asarray(numbers) < self.limit

    def update(self, images: torch.Tensor, numbers: np.ndarray) -> None:
        """Add images ``(n, 3, H, W)`` in [0, 1] of examples ``numbers`` (those numbered
        ``>= limit`` are ignored). Runs on the images' device; sums are kept in float64."""
        keep = self.wants(numbers)
        if not keep.any():
            return
        if not keep.all():
            images = images[torch.from_numpy(np.flatnonzero(keep)).to(images.device)]
        if tuple(images.shape[1:]) != (3, *self.size):
            raise ValueError(f"image statistics expect (n, 3, {self.size[0]}, {self.size[1]}) "
                             f"images, got {tuple(images.shape)}")
        x = images.float()
        self.spectrum_sum += amplitude_spectrum(x).double().sum(0).cpu().numpy()
        flat = x.double().permute(1, 0, 2, 3).reshape(3, -1)  # (3, pixels)
        self.pixel_sum += flat.sum(1).cpu().numpy()
        self.outer_sum += (flat @ flat.T).cpu().numpy()
        self.count += len(x)
        self.pixels += flat.shape[1]

    def result(self) -> DatasetImageStats:
        """Mean spectrum, RGB mean and covariance (``np.cov`` convention, ddof = 1)."""
        n, p = self.count, self.pixels
        if n == 0:
            return DatasetImageStats(np.zeros(self.spectrum_sum.shape, np.float32),
                                     np.zeros(3, np.float32), np.zeros((3, 3), np.float32), 0)
        mean = self.pixel_sum / p
        cov = (self.outer_sum - p * np.outer(mean, mean)) / max(p - 1, 1)
        return DatasetImageStats(spectrum=(self.spectrum_sum / n).astype(np.float32),
                                 colour_mean=mean.astype(np.float32),
                                 colour_cov=cov.astype(np.float32), count=n)

    # -- checkpoint / merge ------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        return {"spectrum_sum": self.spectrum_sum.copy(), "pixel_sum": self.pixel_sum.copy(),
                "outer_sum": self.outer_sum.copy(),
                "count": np.array(self.count, dtype=np.int64),
                "pixels": np.array(self.pixels, dtype=np.int64),
                "limit": np.array(self.limit, dtype=np.int64)}

    def load(self, state: dict[str, np.ndarray]) -> None:
        if tuple(state["spectrum_sum"].shape) != self.spectrum_sum.shape:
            raise ValueError("saved image statistics are for another image size")
        self.spectrum_sum = np.array(state["spectrum_sum"], dtype=np.float64)
        self.pixel_sum = np.array(state["pixel_sum"], dtype=np.float64)
        self.outer_sum = np.array(state["outer_sum"], dtype=np.float64)
        self.count, self.pixels = int(state["count"]), int(state["pixels"])
        self.limit = int(state["limit"])

    @classmethod
    def merge(cls, parts: Sequence[ImageStats]) -> ImageStats:
        """Statistics of the union of disjoint streams (the sums add)."""
        out = cls(parts[0].size, parts[0].limit)
        for p in parts:
            out.spectrum_sum += p.spectrum_sum
            out.pixel_sum += p.pixel_sum
            out.outer_sum += p.outer_sum
            out.count += p.count
            out.pixels += p.pixels
        return out
