"""Helpers shared by the demo training scripts (``train_demo_model.py``,
``train_demo_labeler.py``, ``train_demo_judge.py``), imported as ``benchlib`` is by the
benchmarks: from beside them."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from tqdm import tqdm


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine annealing to 0.

    >>> lr_at(0, 10, 1.0, 2), lr_at(1, 10, 1.0, 2), lr_at(2, 10, 1.0, 2), lr_at(10, 10, 1.0, 2)
    (0.5, 1.0, 1.0, 0.0)
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return 0.5 * peak * (1.0 + math.cos(math.pi * t))


def train_step(model, opt, x, y, lr: float, label_smoothing: float) -> tuple[float, float]:
    """One AdamW step of a classifier at learning rate ``lr`` (cross-entropy with label
    smoothing, gradient norm clipped at 1); returns the batch's loss and accuracy."""
    for group in opt.param_groups:
        group["lr"] = lr
    logits = model(x)
    loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.item(), (logits.argmax(1) == y).float().mean().item()


def budget_steps(step: Callable[[], object], minutes: float, spent: float, reserve: float,
                 timed: int) -> int:
    """The steps that fit in ``minutes`` less ``spent`` seconds so far and ``reserve`` for
    evaluation and writing, timing ``step()`` (a throw-away copy's training step, so that the
    real run is the same computation as ``--steps N``) ``timed`` times after one warm-up."""
    step()
    tp = time.perf_counter()
    for _ in range(timed):
        step()
    per_step = (time.perf_counter() - tp) / timed
    left = minutes * 60 - spent - reserve
    steps = max(50, int(left / (per_step * 1.05)))
    print(f"{per_step * 1000:.0f} ms/step -> {steps} steps for a {minutes:g} min budget")
    return steps


def fit(model, opt, stream: Iterator[tuple[torch.Tensor, torch.Tensor]], steps: int,
        warmup: int, lr: float, label_smoothing: float) -> tuple[float, float]:
    """``steps`` steps of ``train_step`` on ``stream``'s batches at ``lr_at``'s learning rate,
    with a progress bar of the running loss and accuracy; returns the training seconds and
    the final running loss."""
    model.train()
    t_train = time.perf_counter()
    bar = tqdm(range(steps), desc="train", unit="step")
    ema_loss = ema_acc = None
    for step in bar:
        x, y = next(stream)
        loss, acc = train_step(model, opt, x, y, lr_at(step, steps, lr, warmup), label_smoothing)
        ema_loss = loss if ema_loss is None else 0.98 * ema_loss + 0.02 * loss
        ema_acc = acc if ema_acc is None else 0.98 * ema_acc + 0.02 * acc
        if step % 10 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{ema_loss:.3f}", acc=f"{ema_acc:.3f}")
    bar.close()
    return time.perf_counter() - t_train, ema_loss or 0.0
