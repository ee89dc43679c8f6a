"""Everything the index keeps per unit of one layer while streaming.

Of **every** unit of the layer (whatever the channels option selects: the forward computes
them all anyway): the histogram, mean, standard deviation and max. These are what a unit is
compared with (the selectivity term, z-scores, z-ranks), so a unit's figures never depend on
which other units were asked for.

Of the **selected** units (``rows``): the top-k and bottom-k examples, per-class means and the
samples quantile examples are chosen from (``quantiles``).

Memory is ``units × bins + selected × (2k + bins × quantile_k + classes)``, independent of the
number of images; every part checkpoints to arrays and merges exactly across processes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.index.histogram import DEFAULT_BINS, StreamingHistogram
from pipeline.index.quantiles import BinSamples, Quantiles
from pipeline.index.topk import TopK

TOP_CLASSES = 5


class LayerStats:
    """Streaming statistics of one layer's scores ``(images, units)``: whole-layer moments and
    histogram, and the per-example statistics of the selected ``rows`` (None: every unit).

    >>> s = LayerStats(4, 1, rows=[2])
    >>> s.update(np.array([[0, 1, 2, 3], [4, 5, 6, 7]], np.float32), np.arange(2),
    ...          np.array([-1, -1]))
    >>> s.mean().tolist(), s.topk.result()[0].tolist(), s.bottomk_result()[0].tolist()
    ([2.0, 3.0, 4.0, 5.0], [[1]], [[0]])
    """

    def __init__(self, units: int, k: int, num_classes: int = 0, bins: int = DEFAULT_BINS,
                 quantile_k: int = 0, rows: Sequence[int] | None = None):
        self.units, self.k, self.quantile_k = units, k, quantile_k
        self.rows = None if rows is None or list(rows) == list(range(units)) else \
            np.asarray(rows, dtype=np.int64)
        selected = units if self.rows is None else len(self.rows)
        self.selected = selected
        self.topk = TopK(selected, k)
        self.bottomk = TopK(selected, k)  # of negated scores: the k least activating
        self.hist = StreamingHistogram(units, bins)  # the whole layer
        # per (unit, bin) the quantile_k examples of smallest key; None: no quantile examples
        self.samples = BinSamples(selected, bins, quantile_k) if quantile_k > 0 else None
        self.total = np.zeros(units, dtype=np.float64)
        self.total_sq = np.zeros(units, dtype=np.float64)  # sum of squared scores
        self.count = 0
        self.class_sum = np.zeros((num_classes, selected), dtype=np.float64)
        self.class_count = np.zeros(num_classes, dtype=np.int64)

    def pick(self, values: np.ndarray) -> np.ndarray:
        """The selected units' columns (last axis) of whole-layer ``values``."""
        return values if self.rows is None else values[..., self.rows]

    def selected_hist(self) -> StreamingHistogram:
        """The histogram of the selected units (the whole layer's rows)."""
        return self.hist if self.rows is None else self.hist.subset(self.rows)

    def update(self, scores: np.ndarray, numbers: np.ndarray, labels: np.ndarray) -> None:
        """Add ``scores`` ``(n, units)`` float32 (every unit of the layer) of examples
        ``numbers`` (increasing) with ``labels`` (``-1``: none)."""
        if len(numbers) == 0:
            return
        picked = self.pick(scores)
        self.topk.add(picked, numbers)
        self.bottomk.add(-picked, numbers)
        bins = self.hist.add(scores)
        if self.samples is not None:
            self.samples.follow(self.selected_hist())
            self.samples.add(picked, numbers, self.pick(bins))
        self.total += scores.sum(axis=0, dtype=np.float64)
        self.total_sq += np.square(scores, dtype=np.float64).sum(axis=0)
        self.count += len(numbers)
        labelled = labels >= 0
        if labelled.any():
            lab = labels[labelled]
            self._grow_classes(int(lab.max()) + 1)
            rows = picked[labelled].astype(np.float64)
            if len(np.unique(lab)) == len(lab):  # typical of shuffled data: one row per class
                self.class_sum[lab] += rows
            else:  # group rows by class (in example order) and add each group's sum
                order = np.argsort(lab, kind="stable")
                lab, rows = lab[order], rows[order]
                starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
                self.class_sum[lab[starts]] += np.add.reduceat(rows, starts, axis=0)
            self.class_count += np.bincount(lab, minlength=len(self.class_count))

    def _grow_classes(self, n: int) -> None:
        if n > len(self.class_count):
            extra = n - len(self.class_count)
            self.class_sum = np.concatenate([self.class_sum,
                                             np.zeros((extra, self.selected))])
            self.class_count = np.concatenate([self.class_count, np.zeros(extra, np.int64)])

    # -- results -----------------------------------------------------------------------------
    def bottomk_result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, scores)`` ``(selected, k)`` of the least activating examples, least first,
        ties to the lower example number; empty slots hold id -1 and score +inf."""
        ids, neg = self.bottomk.result()
        return ids, -neg

    def mean(self) -> np.ndarray:
        return (self.total / max(self.count, 1)).astype(np.float32)

    def std(self) -> np.ndarray:
        """Population standard deviation of each unit's score (0 before any image).

        >>> s = LayerStats(1, 1)
        >>> s.update(np.array([[1.0], [3.0]], np.float32), np.arange(2), np.array([-1, -1]))
        >>> s.std().tolist()
        [1.0]
        """
        n = max(self.count, 1)
        mean = self.total / n
        var = np.maximum(self.total_sq / n - mean * mean, 0.0)
        return np.sqrt(var).astype(np.float32)

    def max(self) -> np.ndarray:
        return np.where(self.count > 0, self.hist.hi, 0.0).astype(np.float32)

    def top_classes(self, c: int = TOP_CLASSES) -> tuple[np.ndarray, np.ndarray]:
        """``(classes, means)`` ``(units, c)``: the classes with the highest mean score (ties to
        the lower class); ``-1`` / NaN where fewer than ``c`` classes were seen."""
        seen = self.class_count > 0
        means = np.full((self.selected, c), np.nan, dtype=np.float32)
        classes = np.full((self.selected, c), -1, dtype=np.int64)
        if not seen.any():
            return classes, means
        avg = (self.class_sum[seen] / self.class_count[seen, None]).T  # (units, seen classes)
        ids = np.flatnonzero(seen)
        order = np.argsort(-avg, axis=1, kind="stable")[:, :c]
        m = order.shape[1]
        classes[:, :m] = ids[order]
        means[:, :m] = np.take_along_axis(avg, order, axis=1)
        return classes, means

    def quantiles(self, intervals: int) -> Quantiles | None:
        """Up to ``intervals`` intervals between each unit's mean and max, and their examples
        (``BinSamples.select``); None without samples."""
        if self.samples is None or intervals <= 0:
            return None
        return self.samples.select(self.selected_hist(), self.pick(self.mean()), intervals)

    # -- checkpoint / merge ------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        out = {f"topk.{k}": v for k, v in self.topk.state().items()}
        out.update({f"bottomk.{k}": v for k, v in self.bottomk.state().items()})
        out.update({f"hist.{k}": v for k, v in self.hist.state().items()})
        if self.samples is not None:
            out.update({f"samples.{k}": v for k, v in self.samples.state().items()})
        out.update(total=self.total.copy(), total_sq=self.total_sq.copy(),
                   count=np.array(self.count, dtype=np.int64), class_sum=self.class_sum.copy(),
                   class_count=self.class_count.copy())
        return out

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.topk.load({k[5:]: v for k, v in state.items() if k.startswith("topk.")})
        self.bottomk.load({k[8:]: v for k, v in state.items() if k.startswith("bottomk.")})
        self.hist.load({k[5:]: v for k, v in state.items() if k.startswith("hist.")})
        if self.samples is not None:
            self.samples.load({k[8:]: v for k, v in state.items() if k.startswith("samples.")})
        self.total = np.array(state["total"], dtype=np.float64)
        self.total_sq = np.array(state["total_sq"], dtype=np.float64)
        self.count = int(state["count"])
        self.class_sum = np.array(state["class_sum"], dtype=np.float64)
        self.class_count = np.array(state["class_count"], dtype=np.int64)

    @classmethod
    def merge(cls, parts: Sequence[LayerStats]) -> LayerStats:
        """Statistics of the union of disjoint streams (exact for top-k, histogram, max;
        sums in float64 for mean and std)."""
        first = parts[0]
        out = cls(first.units, first.k, 0, first.hist.bins, first.quantile_k, first.rows)
        out.topk = TopK.merge([p.topk for p in parts])
        out.bottomk = TopK.merge([p.bottomk for p in parts])
        out.hist = StreamingHistogram.merge([p.hist for p in parts])
        if first.samples is not None:
            out.samples = BinSamples.merge([p.samples for p in parts], out.selected_hist())
        out.total = np.sum([p.total for p in parts], axis=0)
        out.total_sq = np.sum([p.total_sq for p in parts], axis=0)
        out.count = sum(p.count for p in parts)
        out._grow_classes(max(len(p.class_count) for p in parts))
        for p in parts:
            n = len(p.class_count)
            out.class_sum[:n] += p.class_sum
            out.class_count[:n] += p.class_count
        return out
