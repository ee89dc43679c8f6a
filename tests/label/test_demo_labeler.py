"""The demo labeler: its captioned data, the bundled tiny CLIP (offline, zero-shot well above
chance on the demo's images) and its training script (a few steps save a loadable model)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.data import captions, synthetic

REPO = Path(__file__).resolve().parents[2]
LABELER = REPO / "data" / "demo" / "labeler"


def _script():
    """The script as a module, its helpers (``trainlib``) found beside it as when it runs."""
    spec = importlib.util.spec_from_file_location(
        "train_demo_labeler", REPO / "scripts" / "train_demo_labeler.py")
    module = importlib.util.module_from_spec(spec)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(REPO / "scripts"))
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return _script()


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


# -- the captioned generator ---------------------------------------------------------------
def test_generator_is_a_pure_function_of_seed_index_size():
    for index in (0, 5, 13, 101):
        a, b = captions.make_captioned(index, seed=3), captions.make_captioned(index, seed=3)
        assert a[1] == b[1] and a[0].tobytes() == b[0].tobytes()
        assert a[0].size == (64, 64) and a[0].mode == "RGB"
        other = captions.make_captioned(index, seed=4)
        assert other[0].tobytes() != a[0].tobytes()
    assert captions.make_captioned(7, size=32)[0].size == (32, 32)
    with pytest.raises(ValueError):
        captions.make_captioned(-1)


def test_captions_name_what_is_drawn():
    kinds = set()
    for index in range(360):
        image, scene = captions.make_scene(index, seed=2)
        kinds.add(scene.kind)
        assert scene.label == captions.class_of(index)
        name = synthetic.CLASS_NAMES[scene.label]
        for caption in captions.variants(scene):
            words = captions.caption_words(caption)
            assert set(words) <= set(captions.CONCEPT_WORDS), caption
            assert all(w in caption for w in name.split()), (name, caption)
            if scene.kind == "pair":
                assert scene.second[0] in caption, caption
        if scene.kind == "objects":
            assert scene.count in (2, 3)
            assert any(captions.COUNTS[scene.count - 1] in v for v in captions.variants(scene))
        if scene.kind in ("object", "texture"):
            assert scene.colour != scene.background
            assert any(scene.colour in v for v in captions.variants(scene))
        if scene.kind == "object":
            assert any(scene.size in v for v in captions.variants(scene))
            assert any(scene.position in v for v in captions.variants(scene))
    assert kinds == set(captions.KINDS)


def test_named_colours_are_drawn_where_the_caption_says():
    seen = 0
    for index in range(0, 1700, 17):  # circles: the centre pixel is the shape's colour
        image, scene = captions.make_scene(index, seed=5)
        assert scene.name == "circle"
        if scene.kind != "object" or scene.size != "large" or scene.position != "centre":
            continue
        centre = np.asarray(image, dtype=np.float32)[32, 32] / 255
        dists = {n: np.linalg.norm(centre - np.asarray(c)) for n, c in captions.COLOURS.items()}
        assert min(dists, key=dists.get) == scene.colour
        seen += 1
    assert seen >= 2


def test_demo_scenes_are_drawn_like_synthetic():
    # A demo scene uses synthetic.py's own drawing for its class: same value ranges.
    image, scene = next((im, sc) for i in range(200)
                        for im, sc in [captions.make_scene(i, seed=9)]
                        if sc.kind == "demo" and sc.name == "checkerboard")
    assert scene.colour is None and "checkerboard" in captions.variants(scene)


# -- the bundled labeler -------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundled(script):
    return script.load_labeler(LABELER)


def test_bundled_labeler_files(script):
    cfg = json.loads((LABELER / "open_clip_config.json").read_text(encoding="utf-8"))
    assert cfg["model_cfg"] == script.MODEL_CFG
    assert cfg["preprocess_cfg"]["size"] == 64
    weights = LABELER / "open_clip_model.safetensors"
    assert weights.stat().st_size <= 8_000_000
    assert (LABELER / "MODEL_CARD.md").is_file()


def test_words_outside_the_captions_have_a_zero_embedding(bundled, script):
    model, _, tokenizer = bundled
    emb = model.token_embedding.weight.detach()
    known = script.caption_token_ids(tokenizer)
    assert emb[known].abs().sum(1).min() > 0
    for word in ("banana", "modern", "says"):
        assert all(float(emb[t].abs().sum()) == 0.0 for t in tokenizer.encode(word))


def test_bundled_labeler_loads_offline_and_classifies_demo_images(bundled, script):
    model, preprocess, tokenizer = bundled
    assert tokenizer(["a circle"]).shape == (1, 32)
    n = 120
    demo = [synthetic.make_example(i, synthetic.SPLIT_SEEDS["validation"], 64) for i in range(n)]
    img = script.image_features(model, preprocess, [d[0] for d in demo])
    prompts = [[t.format(captions._a(c)) for t in script.CLASS_TEMPLATES]
               for c in synthetic.CLASS_NAMES]
    txt = script.text_features(model, tokenizer, prompts)
    accuracy = script.zero_shot(img, txt, [d[1] for d in demo])
    assert accuracy >= 0.7, accuracy


# -- the training script -------------------------------------------------------------------
def test_a_tiny_training_run_saves_a_loadable_model(script, tmp_path):
    runs = [script.train(tmp_path / name, steps=2, batch_size=12, workers=0, eval_images=24,
                         distractors=20, progress=False) for name in ("a", "b")]
    metrics = runs[0]
    assert metrics["training"]["steps"] == 2 and metrics["training"]["samples"] == 24
    assert 0.0 <= metrics["demo_classes"] <= 1.0
    names = {p.name for p in (tmp_path / "a").iterdir()}
    assert names == {"open_clip_config.json", "open_clip_model.safetensors", "MODEL_CARD.md",
                     "metrics.json"}  # no temporary files left behind
    weights = [(tmp_path / n / "open_clip_model.safetensors").read_bytes() for n in ("a", "b")]
    assert weights[0] == weights[1]  # seeded: the same run gives the same model
    model, preprocess, tokenizer = script.load_labeler(tmp_path / "a")
    assert next(model.parameters()).dtype == torch.float32
    with torch.no_grad():
        f = model.encode_text(tokenizer(["a red circle"]), normalize=True)
    assert f.shape == (1, script.MODEL_CFG["embed_dim"])
    card = (tmp_path / "a" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "Zero-shot accuracy" in card and "n/a" not in card.split("(a)")[1].split("(b)")[0]
