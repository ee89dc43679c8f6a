"""CLIP-Dissect's SoftWPMI (Oikarinen & Weng, ICLR 2023), for FFN units of a ViT.

With ``P = softmax(scale · cos(image, concept))`` over concepts for every probe image, a
unit's top-``k`` probe images ``e_1..e_k`` (by its score: the mean over patch tokens, as the
index ranks them) are each "in the unit's set" with a probability falling linearly from
``p_start`` to ``p_end`` by rank, and

    log p(concept | unit) = Σ_i log(1 + p_i · (P[e_i, concept] − 1))
    log p(concept)        = logmeanexp over the layer's units of log p(concept | unit)
    SoftWPMI              = log p(concept | unit) − λ · log p(concept)

The label is the concept of highest SoftWPMI. The defaults are the paper's code's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class SoftWPMI:
    """CLIP-Dissect's parameters: ``scale`` (the softmax's ``a``), ``top_k`` images per unit,
    rank weights ``p_start`` → ``p_end``, ``lam`` (λ), and ``min_prob`` inside the log."""

    scale: float = 10.0
    top_k: int = 100
    lam: float = 1.0
    p_start: float = 0.998
    p_end: float = 0.97
    min_prob: float = 1e-7

    def to_dict(self) -> dict:
        return asdict(self)


def concept_probabilities(image_embeddings: np.ndarray, text_embeddings: np.ndarray,
                          scale: float = SoftWPMI.scale,
                          device: torch.device | str = "cpu") -> torch.Tensor:
    """``P``: ``(images, concepts)`` softmax over concepts of ``scale ·`` cosine similarity
    (both embeddings unit-norm).

    >>> p = concept_probabilities(np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32))
    >>> [round(float(v), 4) for v in p[0]]
    [1.0, 0.0]
    """
    img = torch.as_tensor(image_embeddings, dtype=torch.float32, device=device)
    txt = torch.as_tensor(text_embeddings, dtype=torch.float32, device=device)
    return torch.softmax(scale * (img @ txt.T), dim=1)


def top_images(profiles: np.ndarray, k: int) -> np.ndarray:
    """``(units, k)`` row numbers of each unit's ``k`` highest-scoring probe images, best
    first (ties: the lower row first), from ``profiles`` ``(images, units)``.

    >>> top_images(np.array([[1., 5.], [3., 5.], [2., 0.]]), 2).tolist()
    [[1, 2], [0, 1]]
    """
    scores = np.asarray(profiles, dtype=np.float32)
    order = np.argsort(-scores, axis=0, kind="stable")[:k]
    return np.ascontiguousarray(order.T)


def soft_wpmi(probabilities: torch.Tensor, top: np.ndarray, params: SoftWPMI = SoftWPMI(),
              unit_batch: int | None = None) -> torch.Tensor:
    """``(units, concepts)`` SoftWPMI of every unit of one layer, from ``P`` (images ×
    concepts) and each unit's top rows ``top`` (units × k, best first).

    >>> P = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    >>> s = soft_wpmi(P, np.array([[0], [1]]), SoftWPMI(top_k=1))
    >>> s.argmax(dim=1).tolist()  # unit 0's image says concept 0, unit 1's concept 1
    [0, 1]
    """
    device = probabilities.device
    units, k = top.shape
    concepts = probabilities.shape[1]
    steps = torch.arange(k, dtype=torch.float32, device=device)
    weights = (params.p_start - steps / k * (params.p_start - params.p_end)).view(1, k, 1)
    if unit_batch is None:  # cache-sized on the CPU (memory-bound), larger on a GPU
        budget = (64 << 20) if device.type == "cuda" else (4 << 20)
        unit_batch = max(1, budget // max(1, k * concepts))
    index = torch.as_tensor(top, dtype=torch.long, device=device)
    given = torch.empty((units, concepts), dtype=torch.float32, device=device)
    for lo in range(0, units, unit_batch):
        p = probabilities[index[lo:lo + unit_batch]]  # (b, k, concepts), a copy: in place
        p.sub_(1).mul_(weights).add_(1 + params.min_prob).log_()
        torch.sum(p, dim=1, out=given[lo:lo + unit_batch])
    prior = torch.logsumexp(given, dim=0, keepdim=True) - math.log(units)
    return given - params.lam * prior


def best_concepts(scores: torch.Tensor, concepts: tuple[str, ...] | list[str],
                  n: int = 5) -> list[list[dict]]:
    """Per unit, its ``n`` best ``{"concept", "score"}`` (SoftWPMI rounded to 4 places).

    >>> best_concepts(torch.tensor([[0.1, 0.7, 0.3]]), ["a", "b", "c"], n=2)
    [[{'concept': 'b', 'score': 0.7}, {'concept': 'c', 'score': 0.3}]]
    """
    n = min(n, scores.shape[1])
    values, rows = torch.topk(scores, n, dim=1)
    return [[{"concept": concepts[int(c)], "score": round(float(v), 4)}
             for v, c in zip(vals.tolist(), idx.tolist(), strict=True)]
            for vals, idx in zip(values, rows, strict=True)]
