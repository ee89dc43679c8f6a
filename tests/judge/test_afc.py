"""The 2-AFC and transferability against brute-force counts on hand-made cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from pipeline.index.results import Examples, LayerIndex
from pipeline.judge import (
    ExampleEmbeddings,
    afc_pairs,
    afc_right,
    dominant_class,
    measure_layer,
)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_afc_right_equals_a_brute_force_count():
    rng = np.random.default_rng(0)
    ref = _unit(rng.normal(size=3))
    top, bottom = _unit(rng.normal(size=(4, 3))), _unit(rng.normal(size=(5, 3)))
    pairs = np.array(list(itertools.product(range(4), range(5))))
    expect = 0
    for i, j in pairs:  # right: the top image is nearer (cosine) to the reference
        expect += float(np.dot(ref, top[i])) > float(np.dot(ref, bottom[j]))
    assert afc_right(ref, top, bottom, pairs) == expect
    assert 0 < expect < 20  # a case with right and wrong trials


def test_a_tie_is_wrong_and_a_copy_of_a_top_image_is_always_right():
    top, bottom = _unit([[1.0, 0.0], [0.6, 0.8]]), _unit([[0.0, 1.0]])
    pairs = np.array([[0, 0], [1, 0]])
    assert afc_right(top[0], top, bottom, pairs) == 2  # 1 > 0 and 0.6 > 0
    assert afc_right(_unit([1.0, 1.0]), top[:1], _unit([[0.0, 1.0]]), pairs[:1]) == 0  # tie


def test_pairs_are_distinct_seeded_by_the_key_and_bounded():
    p = afc_pairs(15, 16, 20, "m/1/7")
    assert p.shape == (20, 2) and len({tuple(r) for r in p}) == 20
    assert (p[:, 0] < 15).all() and (p[:, 1] < 16).all()
    np.testing.assert_array_equal(p, afc_pairs(15, 16, 20, "m/1/7"))
    assert not np.array_equal(p, afc_pairs(15, 16, 20, "m/1/8"))
    assert afc_pairs(2, 3, 20, "k").shape == (6, 2)  # every pair, once
    assert afc_pairs(0, 3, 20, "k").shape == (0, 2)


def test_dominant_class():
    assert dominant_class([3, 3, 3, 1, 2]) == (3, 0.6)
    assert dominant_class([3, 3, 1, 2, None]) is None
    assert dominant_class([None, None]) is None


class ColourJudge:
    """A judge whose embedding is an image's mean colour and whose class is its reddest
    channel: easy to count by hand."""

    id = "colour"

    def embed(self, images):
        m = np.asarray(images, np.float64).mean(axis=(1, 2)) + 1e-3
        return (m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32)

    def classify(self, images, class_names):
        return np.asarray(images, np.float64).mean(axis=(1, 2)).argmax(1)


def test_measure_layer_against_brute_force(tmp_path):
    rng = np.random.default_rng(1)
    n, k = 12, 5
    colours = rng.integers(0, 256, (n, 3))
    thumbs = []
    for i, c in enumerate(colours):
        Image.fromarray(np.full((8, 8, 3), c, np.uint8)).save(tmp_path / f"{i}.png")
        thumbs.append(f"{i}.png")
    labels = [0, 0, 0, 0, 1, 2, 1, 2, 0, 1, 2, 1]
    examples = Examples(tmp_path, [str(i) for i in range(n)], labels, thumbs,
                        ["red", "green", "blue"], n, [])
    top_ids = np.array([[0, 1, 2, 3, 4], [5, 6, 7, 8, -1]])
    bottom_ids = np.array([[11, 10, 9, 8, 7], [0, 1, 2, 3, 4]])
    index = LayerIndex(top_ids=top_ids, top_scores=np.zeros((2, k), np.float32),
                       maps=np.zeros((2, k, 1, 1)), hist_counts=np.zeros((2, 4)),
                       hist_edges=np.zeros((2, 5)), mean=np.zeros(2), std=np.ones(2),
                       max=np.zeros(2), top_classes=np.zeros((2, 1)),
                       top_class_means=np.zeros((2, 1)), units=np.array([3, 9]),
                       bottom_ids=bottom_ids, bottom_scores=np.zeros((2, k), np.float32))
    judge = ColourJudge()
    images = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    got = measure_layer(judge, ExampleEmbeddings(judge, examples), index, [3, 9], images,
                        "m/0", trials=7)
    emb = judge.embed(np.stack([np.full((8, 8, 3), c, np.uint8) for c in colours]))
    ref = judge.embed(images)
    for i, (unit, r) in enumerate(zip([3, 9], got, strict=True)):
        top = [t for t in top_ids[i] if t >= 0]
        pairs = afc_pairs(len(top) - 1, k, 7, f"m/0/{unit}")
        right = sum(float(ref[i] @ emb[top[1:][a]]) > float(ref[i] @ emb[bottom_ids[i][b]])
                    for a, b in pairs)
        best = sum(float(emb[top[0]] @ emb[top[1:][a]]) > float(emb[top[0]] @ emb[bottom_ids[i][b]])
                   for a, b in pairs)
        assert r["trials"] == 7 and r["right"] == right and r["afc"] == pytest.approx(right / 7)
        assert r["best_example"]["right"] == best and r["judge"] == "colour"
    # unit 3's top examples are 80% class 0 ("red"): transfer is defined; unit 9's are mixed
    guess = int(images[0].astype(float).mean(axis=(0, 1)).argmax())
    assert got[0]["transfer"] == {"class": "red", "share": 0.8,
                                  "judged": ["red", "green", "blue"][guess], "hit": guess == 0}
    assert got[1]["transfer"] is None
    # a unit the index lacks is not measured
    assert measure_layer(judge, ExampleEmbeddings(judge, examples), index, [4], images[:1],
                         "m/0") == [None]
