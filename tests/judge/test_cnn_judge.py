"""The second judge: the bundled demo CNN loads offline, reads held-out procedural images, gives
unit-norm deterministic embeddings, restricts its classes to the names asked about, and says
clearly when its files are missing or corrupt."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pipeline.data.synthetic import CLASS_NAMES, make_example
from pipeline.errors import AtlasError
from pipeline.judge.cnn import CONFIG_NAME, WEIGHTS_NAME, demo_judge_dir, load_cnn_judge

FRESH_SEED = 11  # neither the judge's training (2), its held-out (3) nor the demo's (0, 1)


@pytest.fixture(scope="module")
def judge():
    return load_cnn_judge()


@pytest.fixture(scope="module")
def fresh():
    pairs = [make_example(i, FRESH_SEED, 64) for i in range(480)]
    return (np.stack([np.asarray(p[0]) for p in pairs]),
            np.asarray([p[1] for p in pairs]))


def test_bundled_judge_is_small_and_described():
    folder = demo_judge_dir()
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert (folder / WEIGHTS_NAME).stat().st_size < 400_000
    assert config["class_names"] == list(CLASS_NAMES)
    assert config["input_size"] == 64 and config["dtype"] == "float16"
    assert config["accuracy"]["heldout"] >= 0.97
    assert config["training"]["data_seed"] not in (0, 1)  # the demo model's seeds
    assert "train_demo_judge.py" in (folder / "MODEL_CARD.md").read_text()


def test_classifies_fresh_held_out_images(judge, fresh):
    images, labels = fresh
    pred = judge.classify(images, list(CLASS_NAMES))
    assert pred.shape == (len(labels),) and pred.dtype == np.int64
    assert (pred == labels).mean() >= 0.95


def test_other_sizes_are_resized(judge, fresh):
    images, labels = fresh
    big = np.stack([np.asarray(make_example(i, FRESH_SEED, 96)[0]) for i in range(48)])
    assert (judge.classify(big, list(CLASS_NAMES)) == labels[:48]).mean() >= 0.85
    assert judge.embed(big).shape == (48, judge.embed(images[:1]).shape[1])


def test_embeddings_are_unit_norm_and_deterministic(judge, fresh):
    images = fresh[0][:64]
    a = judge.embed(images)
    assert a.dtype == np.float32 and a.ndim == 2 and a.shape[0] == 64
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, judge.embed(images))
    np.testing.assert_array_equal(a, load_cnn_judge().embed(images))
    np.testing.assert_allclose(a[5:6], judge.embed(images[5:6]), atol=1e-5)  # batching
    assert judge.embed(images[:0]).shape == (0, a.shape[1])


def test_same_class_embeds_closer(judge, fresh):
    images, labels = fresh
    e = judge.embed(images)
    sim = e @ e.T
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(same, False)
    assert sim[same].mean() > sim[labels[:, None] != labels[None, :]].mean() + 0.2


def test_classify_restricted_to_given_names(judge, fresh):
    images, labels = fresh
    circles = images[labels == CLASS_NAMES.index("circle")][:10]
    names = ["Unicorn", "RING", "circle "]  # case and spaces do not matter
    pred = judge.classify(circles, names)
    assert set(pred.tolist()) <= {1, 2} and (pred == 2).mean() >= 0.9
    # A class left out is never predicted: circles go to the nearest name offered.
    assert set(judge.classify(circles, ["unicorn", "ring", "square"]).tolist()) <= {1, 2}
    assert judge.known(["Dots", "cat"]) == [CLASS_NAMES.index("dots"), None]
    with pytest.raises(ValueError, match="none of the class names"):
        judge.classify(circles, ["cat", "dog"])


def test_rejects_images_that_are_not_uint8_rgb(judge):
    with pytest.raises(ValueError, match="uint8"):
        judge.embed(np.zeros((2, 64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        judge.embed(np.zeros((64, 64, 3), np.uint8))


def test_missing_or_corrupt_files_give_clear_errors(tmp_path):
    with pytest.raises(AtlasError, match="no CNN judge at .*judge.json is missing"):
        load_cnn_judge(tmp_path / "nowhere")
    copy = tmp_path / "judge"
    shutil.copytree(demo_judge_dir(), copy)
    assert load_cnn_judge(copy / CONFIG_NAME).id == "demo-cnn"  # the config file works too
    (copy / WEIGHTS_NAME).write_bytes(b"not safetensors")
    with pytest.raises(AtlasError, match="corrupt CNN judge weights"):
        load_cnn_judge(copy)
    (copy / WEIGHTS_NAME).unlink()
    with pytest.raises(AtlasError, match="weights are missing"):
        load_cnn_judge(copy)
    (copy / CONFIG_NAME).write_text("{not json")
    with pytest.raises(AtlasError, match="corrupt CNN judge config"):
        load_cnn_judge(copy)
    config = json.loads((demo_judge_dir() / CONFIG_NAME).read_text())
    config["architecture"]["stem"] = 8
    (copy / CONFIG_NAME).write_text(json.dumps(config))
    shutil.copy(demo_judge_dir() / WEIGHTS_NAME, copy / WEIGHTS_NAME)
    with pytest.raises(AtlasError, match="do not fit its config"):
        load_cnn_judge(copy)
