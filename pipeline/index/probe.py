"""The probe set, recorded during the scan: every unit's score over the first
``probe_images`` examples (its *profile*), and, when an image encoder (a labeler) rides
along, its embedding of each of those images.

Rows collected since the last checkpoint are flushed to ``work/r{rank}of{world}/
probe-{start:010d}.npz`` with the other work files (so a checkpoint never rewrites the whole
profile matrix) and read back at the end; ``results.write_probe`` then writes the merged,
number-ordered arrays.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline.store import atomic_save_npz


@dataclass
class ProbeEncoder:
    """An image model run on the probe images besides the atlas's: ``transform`` (PIL
    image → tensor, in the decoding workers), ``encode`` (batch → ``(n, D)`` float32),
    and ``id`` naming it in the outputs."""

    id: str
    transform: Callable
    encode: Callable[[torch.Tensor], np.ndarray]


@dataclass
class ProbeRows:
    """Probe rows of one rank (or merged): example numbers, per-layer scores, embeddings."""

    numbers: np.ndarray  # (n,) int64
    scores: dict[int, np.ndarray]  # layer -> (n, units) float32
    embeddings: np.ndarray | None = None  # (n, D) float32, rows as ``numbers``

    @classmethod
    def merge(cls, parts: list[ProbeRows]) -> ProbeRows:
        """The union of disjoint parts, ordered by example number."""
        parts = [p for p in parts if len(p.numbers)] or parts[:1]
        numbers = np.concatenate([p.numbers for p in parts])
        order = np.argsort(numbers, kind="stable")
        scores = {i: np.concatenate([p.scores[i] for p in parts])[order]
                  for i in parts[0].scores}
        emb = None
        if all(p.embeddings is not None for p in parts):
            emb = np.concatenate([p.embeddings for p in parts])[order]
        return cls(numbers[order], scores, emb)


@dataclass
class ProbeLog:
    """Rows of the probe set seen since the last checkpoint (see the module docstring).

    >>> import tempfile
    >>> log = ProbeLog(Path(tempfile.mkdtemp()), limit=2, layers=[0])
    >>> log.add_scores(np.arange(3), {0: np.ones((3, 4), np.float32)})
    >>> log.flush(3); log.read().scores[0].shape
    (2, 4)
    """

    dir: Path
    limit: int
    layers: list[int]
    encoder_id: str | None = None
    start: int = 0
    _numbers: list[np.ndarray] = field(default_factory=list)
    _scores: dict[int, list[np.ndarray]] = field(default_factory=dict)
    _emb_numbers: list[np.ndarray] = field(default_factory=list)
    _emb: list[np.ndarray] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wants(self, numbers: np.ndarray) -> np.ndarray:
        return np.asarray(numbers) < self.limit

    def add_scores(self, numbers: np.ndarray, scores: dict[int, np.ndarray]) -> None:
        """Keep the rows of examples numbered below ``limit`` (scanner thread)."""
        keep = self.wants(numbers)
        if not keep.any():
            return
        with self._lock:
            self._numbers.append(np.asarray(numbers)[keep].astype(np.int64))
            for i in self.layers:
                self._scores.setdefault(i, []).append(np.asarray(scores[i])[keep])

    def add_embeddings(self, numbers: np.ndarray, embeddings: np.ndarray) -> None:
        with self._lock:
            self._emb_numbers.append(np.asarray(numbers, dtype=np.int64))
            self._emb.append(np.asarray(embeddings, dtype=np.float32))

    def flush(self, end: int) -> None:
        """Write the pending rows as the chunk starting at ``start`` (consumed count)."""
        with self._lock:
            if self._numbers:
                arrays = {"numbers": np.concatenate(self._numbers)}
                for i in self.layers:
                    arrays[f"L{i:03d}"] = np.concatenate(self._scores[i])
                if self._emb:
                    emb_numbers = np.concatenate(self._emb_numbers)
                    if not np.array_equal(emb_numbers, arrays["numbers"]):
                        raise RuntimeError("probe embeddings and scores cover other images")
                    arrays["embeddings"] = np.concatenate(self._emb)
                    arrays["encoder"] = np.array(self.encoder_id or "")
                atomic_save_npz(self.dir / f"probe-{self.start:010d}.npz", **arrays)
            self._numbers, self._scores, self._emb_numbers, self._emb = [], {}, [], []
            self.start = end

    def drop_after(self, consumed: int) -> None:
        """Remove chunks a killed run wrote past its last saved state."""
        for path in self.dir.glob("probe-*.npz"):
            if int(path.stem.split("-")[1]) >= consumed:
                path.unlink(missing_ok=True)

    def read(self) -> ProbeRows:
        """Every flushed row of this rank, in stream order."""
        numbers, emb = [], []
        scores: dict[int, list[np.ndarray]] = {i: [] for i in self.layers}
        has_emb = True
        for path in sorted(self.dir.glob("probe-*.npz")):
            with np.load(path, allow_pickle=False) as z:
                numbers.append(z["numbers"])
                for i in self.layers:
                    scores[i].append(z[f"L{i:03d}"])
                if "embeddings" in z.files and str(z["encoder"]) == (self.encoder_id or ""):
                    emb.append(z["embeddings"])
                else:
                    has_emb = False
        if not numbers:
            return ProbeRows(np.zeros(0, np.int64), {i: np.zeros((0, 0), np.float32)
                                                     for i in self.layers}, None)
        return ProbeRows(np.concatenate(numbers),
                         {i: np.concatenate(s) for i, s in scores.items()},
                         np.concatenate(emb) if has_emb and emb else None)
