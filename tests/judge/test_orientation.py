"""Both bundled judges tell a stripe pattern's orientation: given a horizontal-stripes image,
each judges another horizontal one closer than a vertical one (the 2-AFC's rule), and names
rotated stripes by their new direction. So a recipe that draws a stripe unit's stripes in the
right direction gets credit for it: the judges are not blind to orientation."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data.synthetic import CLASS_NAMES, NUM_CLASSES, make_example
from pipeline.judge import load_judge

SEED = 13  # neither the judges' training seeds nor the demo's
HORIZONTAL, VERTICAL = CLASS_NAMES.index("horizontal stripes"), CLASS_NAMES.index(
    "vertical stripes")


@pytest.fixture(scope="module")
def horizontal() -> np.ndarray:
    found = [make_example(i, SEED, 64)[0] for i in range(HORIZONTAL, 24 * NUM_CLASSES,
                                                          NUM_CLASSES)]
    assert all(make_example(i, SEED, 64)[1] == HORIZONTAL
               for i in range(HORIZONTAL, 3 * NUM_CLASSES, NUM_CLASSES))
    return np.stack([np.asarray(im.convert("RGB")) for im in found])


@pytest.mark.parametrize("spec", ["demo", "cnn:demo"])
def test_judges_tell_stripe_orientation(spec, horizontal):
    judge = load_judge(spec)
    vertical = np.stack([np.rot90(im).copy() for im in horizontal])  # the same stripes, turned
    names = list(CLASS_NAMES)
    assert (judge.classify(horizontal, names) == HORIZONTAL).mean() >= 0.9
    assert (judge.classify(vertical, names) == VERTICAL).mean() >= 0.9
    h, v = judge.embed(horizontal), judge.embed(vertical)
    n = len(h)
    rng = np.random.default_rng(0)
    right = 0
    for _ in range(400):  # reference and top: two horizontal images; bottom: a vertical one
        a, b = rng.choice(n, 2, replace=False)
        c = rng.choice(n)
        right += float(h[a] @ h[b]) > float(h[a] @ v[c])
    assert right / 400 >= 0.95
