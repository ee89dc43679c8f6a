"""The procedural dataset: determinism, balance, every class, image folder export."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from pipeline.data import synthetic
from pipeline.data.synthetic import (
    CLASS_NAMES,
    SPLIT_SEEDS,
    export_imagefolder,
    iter_examples,
    make_example,
)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


def test_class_names_are_unique_readable_and_at_least_ten():
    assert len(CLASS_NAMES) >= 10
    assert len(set(CLASS_NAMES)) == len(CLASS_NAMES)
    for needed in ("circle", "square", "triangle", "horizontal stripes", "vertical stripes",
                   "diagonal stripes", "checkerboard", "dots", "gradient"):
        assert needed in CLASS_NAMES
    assert SPLIT_SEEDS == {"train": 0, "validation": 1}


@pytest.mark.parametrize("size", [32, 64, 97])
def test_make_example_is_rgb_of_the_requested_size(size):
    image, label = make_example(5, seed=0, size=size)
    assert image.mode == "RGB"
    assert image.size == (size, size)
    assert label == 5 % len(CLASS_NAMES)


def test_same_seed_and_index_give_identical_pixels():
    for index in range(len(CLASS_NAMES) * 2):
        a, la = make_example(index, seed=3, size=64)
        b, lb = make_example(index, seed=3, size=64)
        assert la == lb
        assert np.array_equal(pixels(a), pixels(b))


def test_result_does_not_depend_on_call_order():
    later, _ = make_example(40, seed=0)
    for index in range(40):  # drawing others in between must not shift any random stream
        make_example(index, seed=0)
    again, _ = make_example(40, seed=0)
    assert np.array_equal(pixels(later), pixels(again))


def test_different_indices_seeds_and_splits_differ():
    a, _ = make_example(7, seed=0)
    b, _ = make_example(7 + len(CLASS_NAMES), seed=0)  # same class, other index
    c, _ = make_example(7, seed=1)
    assert not np.array_equal(pixels(a), pixels(b))
    assert not np.array_equal(pixels(a), pixels(c))
    train = [pixels(im) for _, im, _ in iter_examples(24, "train")]
    val = [pixels(im) for _, im, _ in iter_examples(24, "validation")]
    assert all(not np.array_equal(t, v) for t, v in zip(train, val, strict=True))


def test_iter_examples_ids_labels_and_start():
    items = list(iter_examples(5, split="train", size=32, start=10))
    assert [i for i, _, _ in items] == [f"synthetic-train-{k:06d}" for k in range(10, 15)]
    for (_, image, label), k in zip(items, range(10, 15), strict=True):
        ref, ref_label = make_example(k, seed=SPLIT_SEEDS["train"], size=32)
        assert label == ref_label
        assert np.array_equal(pixels(image), pixels(ref))
    with pytest.raises(ValueError, match="split"):
        next(iter_examples(1, split="test"))


def test_every_class_appears_and_labels_are_balanced():
    n_cls = len(CLASS_NAMES)
    counts = Counter(label for _, _, label in iter_examples(n_cls * 5, "validation", size=32))
    assert set(counts) == set(range(n_cls))
    assert set(counts.values()) == {5}


def test_images_are_not_degenerate_and_classes_differ_in_structure():
    # Every image has some spread; full-frame patterns cover both of their colours.
    for _, image, label in iter_examples(len(CLASS_NAMES) * 3, "train"):
        arr = pixels(image).astype(np.float32)
        assert arr.std() > 3.0, CLASS_NAMES[label]
    # Horizontal stripes vary along y far more than along x; vertical ones the other way.
    h = CLASS_NAMES.index("horizontal stripes")
    v = CLASS_NAMES.index("vertical stripes")
    for k in range(5):
        hs = pixels(make_example(h + k * len(CLASS_NAMES))[0]).astype(np.float32).mean(axis=2)
        vs = pixels(make_example(v + k * len(CLASS_NAMES))[0]).astype(np.float32).mean(axis=2)
        # the profile across the stripes swings; the one along them stays nearly flat
        assert hs.mean(axis=1).std() > 2 * hs.mean(axis=0).std()
        assert vs.mean(axis=0).std() > 2 * vs.mean(axis=1).std()


def test_colour_alone_does_not_tell_the_class():
    # Mean colour per image should be spread similarly across classes (colours are random).
    n_cls = len(CLASS_NAMES)
    means = np.zeros((n_cls, 3))
    for _, image, label in iter_examples(n_cls * 30, "train", size=32):
        means[label] += pixels(image).reshape(-1, 3).mean(axis=0) / 30
    assert np.all(means > 60) and np.all(means < 195)


def test_generation_is_fast():
    n = 300
    t = time.perf_counter()
    for _ in iter_examples(n, "train", size=64):
        pass
    rate = n / (time.perf_counter() - t)
    assert rate > 300, f"{rate:.0f} images/s"  # ~2000/s on an idle core; slack for busy CI


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        make_example(-1)
    with pytest.raises(ValueError):
        make_example(0, seed=-2)


def test_export_imagefolder_layout_and_contents(tmp_path):
    n = len(CLASS_NAMES) * 2 + 3
    root = export_imagefolder(tmp_path / "folder", n, split="validation", size=32)
    assert root == tmp_path / "folder"
    dirs = sorted(p.name for p in root.iterdir())
    assert dirs == sorted(synthetic.class_dirname(c) for c in CLASS_NAMES)
    assert "horizontal_stripes" in dirs
    files = sorted(root.rglob("*"))
    pngs = [p for p in files if p.is_file()]
    assert len(pngs) == n
    assert not [p for p in pngs if p.suffix != ".png"]  # no temp files left behind
    for index in (0, 1, n - 1):
        image, label = make_example(index, seed=SPLIT_SEEDS["validation"], size=32)
        path = root / synthetic.class_dirname(CLASS_NAMES[label]) / (
            f"synthetic-validation-{index:06d}.png")
        with Image.open(path) as png:
            assert png.mode == "RGB" and png.size == (32, 32)
            assert np.array_equal(np.asarray(png), pixels(image))  # PNG is lossless


def test_export_imagefolder_resumes_without_rewriting(tmp_path):
    root = export_imagefolder(tmp_path, 12, split="train", size=16)
    first = root / synthetic.class_dirname(CLASS_NAMES[0]) / "synthetic-train-000000.png"
    stamp = first.stat().st_mtime_ns
    export_imagefolder(tmp_path, 24, split="train", size=16)
    assert first.stat().st_mtime_ns == stamp
    assert len(list(root.rglob("*.png"))) == 24


def test_class_dirname_is_filesystem_safe():
    for name in CLASS_NAMES:
        d = synthetic.class_dirname(name)
        assert d and " " not in d and "/" not in d
    assert synthetic.class_dirname("a / b:c") == "a_b_c"
