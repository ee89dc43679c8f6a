"""Helpers shared by the demo training scripts (``train_demo_model.py``,
``train_demo_labeler.py``, ``train_demo_judge.py``), imported as ``benchlib`` is by the
benchmarks: from beside them."""

from __future__ import annotations

import math


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine annealing to 0.

    >>> lr_at(0, 10, 1.0, 2), lr_at(1, 10, 1.0, 2), lr_at(2, 10, 1.0, 2), lr_at(10, 10, 1.0, 2)
    (0.5, 1.0, 1.0, 0.0)
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return 0.5 * peak * (1.0 + math.cos(math.pi * t))
