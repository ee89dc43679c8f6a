"""One forward per batch feeds every selected FFN layer: scores and statistics.

Score(image, unit) = the unit's activation averaged over patch tokens (prefix tokens
excluded, as ``LayerCapture`` returns them). The forward runs under ``inference_mode``, with
bf16 autocast on CUDA, and stops after the deepest selected layer. On CUDA the statistics of
batch i (CPU work: heaps, histograms) run in one background thread while the GPU computes
batch i+1; one thread, in order, so the results are the same as inline.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

from pipeline.capture import LayerCapture
from pipeline.index.pooled import PooledCapture
from pipeline.index.probe import ProbeLog
from pipeline.index.stats import LayerStats
from pipeline.models.spec import FFNLayer
from pipeline.precision import autocast

FINITE = float(np.finfo(np.float32).max)


class Scanner:
    """Use as ``with Scanner(model, layers, units, k, device) as s: s.update(batch...)``;
    scores come from ``PooledCapture`` (reduced in the hooks), maps from ``LayerCapture``."""

    def __init__(self, model: nn.Module, layers: Sequence[FFNLayer],
                 units: dict[int, list[int]], k: int, device: torch.device,
                 num_classes: int = 0, overlap: bool | None = None,
                 probe: ProbeLog | None = None, quantile_k: int = 0):
        self.model, self.layers, self.device = model, list(layers), device
        self.probe = probe  # receives the scores of the probe images, if given
        self.units = {layer.index: list(units[layer.index]) for layer in self.layers}
        self._select = {
            layer.index: None if self.units[layer.index] == list(range(layer.units))
            else torch.tensor(self.units[layer.index], device=device)
            for layer in self.layers
        }
        # Scores of every unit feed the whole-layer statistics; the selected ones the rest.
        self._stats = {layer.index: LayerStats(layer.units, k, num_classes,
                                               quantile_k=quantile_k,
                                               rows=self.units[layer.index])
                       for layer in self.layers}
        self.overlap = device.type == "cuda" if overlap is None else overlap
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None

    def __enter__(self) -> Scanner:
        if self.overlap:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="index-stats")
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None

    @property
    def stats(self) -> dict[int, LayerStats]:
        """Every layer's statistics, up to date (waits for a pending update)."""
        self.wait()
        return self._stats

    def wait(self) -> None:
        """Finish the pending background update (re-raising its error, if any)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def activations(self, pixels: torch.Tensor) -> dict[int, torch.Tensor]:
        """``{layer: (B, rows*cols, selected units)}`` patch-token activations (for maps).
        Hooks are on only during the call, so the model stays usable in between."""
        x = pixels.to(self.device, non_blocking=True)
        with torch.inference_mode(), autocast(self.device), \
                LayerCapture(self.model, self.layers) as capture:
            acts = capture(x)
        out = {}
        for index, a in acts.items():
            sel = self._select[index]
            out[index] = a if sel is None else a.index_select(-1, sel)
        return out

    def scores(self, pixels: torch.Tensor) -> dict[int, np.ndarray]:
        """``{layer: (B, units)}`` float32 mean-over-patches scores of every unit of each
        layer (selected or not: the whole-layer statistics need them all)."""
        x = pixels.to(self.device, non_blocking=True)
        with torch.inference_mode(), autocast(self.device), \
                PooledCapture(self.model, self.layers) as capture:
            pooled = capture(x)
        return {index: np.nan_to_num(s.cpu().numpy(), copy=False, nan=0.0, posinf=FINITE,
                                     neginf=-FINITE)
                for index, s in pooled.items()}

    def update(self, pixels: torch.Tensor, numbers: np.ndarray, labels: np.ndarray) -> None:
        """Score one batch and add it to every layer's statistics."""
        if len(numbers) == 0:
            return
        scores = self.scores(pixels)
        if self._pool is None:
            self._add(scores, numbers, labels)
            return
        self.wait()
        self._pending = self._pool.submit(self._add, scores, numbers, labels)

    def _add(self, scores: dict[int, np.ndarray], numbers: np.ndarray,
             labels: np.ndarray) -> None:
        for index, s in scores.items():
            self._stats[index].update(s, numbers, labels)
        if self.probe is not None:
            self.probe.add_scores(numbers, {index: self._stats[index].pick(s)
                                            for index, s in scores.items()})
