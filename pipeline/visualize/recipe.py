"""Visualization recipes: the paper's as published, and the faster default."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a visualization besides the model and the seed."""

    name: str
    steps: int = 400
    lr: float = 0.1
    betas: tuple[float, float] = (0.5, 0.99)
    copies: int = 8  # augmented views of each image per step
    colour_jitter: bool = True  # per-copy per-channel (x - m) / s, m ~ U(-1, 1), s = e^U(-1, 1)
    anneal_jitter: float = 0.0  # > 0: scale m and log s by (remaining / total) ** anneal_jitter
    offset: float = 0.5  # per-copy per-channel N(0, 1) * offset * remaining / total
    roll: float = 32 / 224  # max translation as a fraction of the side (32 px at 224)
    tv: float = 0.0005  # weight of the total-variation regularizer (0.0005 * tv, tv = 1.0)
    truncate: bool = True  # stop the forward at the target FFN

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    def with_steps(self, steps: int | None) -> Recipe:
        return self if steps is None else replace(self, steps=steps)


# Ghiasi et al. 2022, as published: 8 augmented copies, 400 steps of Adam on plain pixels.
PAPER = Recipe(name="paper", truncate=False)

# Measured in scripts/bench_visualize.py: one augmented view per step instead of eight, a
# truncated forward, and colour jitter annealed to none by the last step (strength
# (remaining/total)**2; the paper anneals only its offset noise). Each step costs ~1/8 of the
# paper's FLOPs or less; annealing recovers the objective a single noisy view loses.
DEFAULT = Recipe(name="default", copies=1, lr=0.1, anneal_jitter=2.0)

RECIPES = {r.name: r for r in (PAPER, DEFAULT)}
