"""The label stage: concepts, labelers (local open_clip weights only), SoftWPMI, end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.cli import main
from pipeline.errors import AtlasError
from pipeline.index.results import load_probe, load_probe_embeddings
from pipeline.label.concepts import default_concepts, read_concepts
from pipeline.label.dissect import SoftWPMI, concept_probabilities, soft_wpmi, top_images
from pipeline.label.labelers import load_labeler, parse_labeler
from pipeline.label.stage import image_embeddings
from pipeline.store import AtlasStore, atomic_write_json
from tests.index.support import tiny_run

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8,
                   "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                 "layers": 1},
}


def save_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A random-init open_clip CLIP in open_clip's ``local-dir:`` layout."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = open_clip.model.CLIP(**TINY_CLIP)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(folder / "open_clip_model.safetensors"))
    atomic_write_json(folder / "open_clip_config.json", {
        "model_cfg": TINY_CLIP,
        "preprocess_cfg": {"size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}})
    return folder


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny")


# -- concepts ----------------------------------------------------------------------------------
def test_default_concepts_are_common_words_plus_classes():
    c = default_concepts(["Noise Blobs", "Time"], n=500)
    assert len(c.concepts) == 501  # "time" is common already; "noise blobs" is added
    assert c.concepts[-1] == "noise blobs" and "time" in c.concepts[:500]
    assert all(len(w) >= 3 for w in c.concepts[:500])
    assert c.digest != default_concepts(None, n=500).digest


def test_concepts_file_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# only a comment\n\n")
    with pytest.raises(AtlasError, match="holds no concepts"):
        read_concepts(empty)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("café\n".encode("latin-1"))
    with pytest.raises(AtlasError, match="not UTF-8"):
        read_concepts(latin)
    binary = tmp_path / "x.bin"
    binary.write_bytes(b"ab\x00cd\n")
    with pytest.raises(AtlasError, match="binary"):
        read_concepts(binary)
    with pytest.raises(AtlasError, match="does not exist"):
        read_concepts(tmp_path / "nope.txt")


# -- labelers ----------------------------------------------------------------------------------
def test_labeler_spec_errors(tmp_path):
    with pytest.raises(AtlasError, match="unknown open_clip model 'ViT-B-61'.*ViT-B-16"):
        parse_labeler("open_clip:ViT-B-61/openai")
    with pytest.raises(AtlasError, match="neither a pretrained tag"):
        parse_labeler("open_clip:ViT-B-16/no-such-tag")
    with pytest.raises(AtlasError, match="expected open_clip:<model>/<pretrained>"):
        parse_labeler("open_clip:ViT-B-16")
    with pytest.raises(AtlasError, match="unknown labeler"):
        parse_labeler("clip-please")
    with pytest.raises(AtlasError, match="self needs a CLIP ViT"):
        parse_labeler("self", "vit_base_patch16_224")
    assert parse_labeler("self", "vit_base_patch16_clip_224.openai").spec == \
        "open_clip:ViT-B-16/openai"
    (tmp_path / "w.pt").write_bytes(b"x")
    with pytest.raises(AtlasError, match="name its architecture"):
        parse_labeler(str(tmp_path / "w.pt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(AtlasError, match="no open_clip_config.json"):
        parse_labeler(str(tmp_path / "empty"))


def test_hub_weights_missing_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    # huggingface_hub reads HF_HUB_OFFLINE when imported, as for a user who set it first
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(AtlasError, match="could not load the labeler.*HF_HUB_OFFLINE"):
        load_labeler("open_clip:ViT-B-32/openai")


def test_local_dir_labeler_embeds(tiny_clip):
    labeler = load_labeler(str(tiny_clip))
    texts = labeler.encode_texts(["circle", "stripes", "circle"])
    assert texts.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(texts[0], texts[2], atol=1e-6)
    assert labeler.id.startswith(str(tiny_clip)) and "@sha256:" in labeler.id
    from PIL import Image

    x = labeler.preprocess(Image.new("RGB", (50, 40), (200, 10, 10)))
    assert tuple(x.shape) == (3, 32, 32)


def test_open_clip_model_with_local_checkpoint_file(tmp_path):
    """``open_clip:<builtin architecture>/<checkpoint file>``: local weights, no hub."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(1)
    model = open_clip.create_model("ViT-S-32-alt")
    path = tmp_path / "vit-s-32.safetensors"
    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, str(path))
    labeler = load_labeler(f"open_clip:ViT-S-32-alt/{path}")
    expected = model.encode_text(open_clip.get_tokenizer("ViT-S-32-alt")(["dots"]),
                                 normalize=True).detach().numpy()
    np.testing.assert_allclose(labeler.encode_texts(["dots"]), expected, atol=2e-2)
    assert labeler.id.startswith(f"open_clip:ViT-S-32-alt/{path}@sha256:")


# -- SoftWPMI ----------------------------------------------------------------------------------
def reference_soft_wpmi(clip_feats, target_feats, top_k, a, lam, min_prob=1e-7,
                        p_start=0.998, p_end=0.97):
    """The formula as CLIP-Dissect's paper states it, one unit and one concept at a time."""
    P = np.exp(a * clip_feats - (a * clip_feats).max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    units, concepts = target_feats.shape[1], clip_feats.shape[1]
    given = np.zeros((units, concepts))
    for u in range(units):
        top = np.argsort(-target_feats[:, u], kind="stable")[:top_k]
        for c in range(concepts):
            total = 0.0
            for rank, img in enumerate(top):
                p = p_start - rank / top_k * (p_start - p_end)
                total += math.log(1 + p * (P[img, c] - 1) + min_prob)
            given[u, c] = total
    prior = np.log(np.exp(given - given.max(0)).sum(0)) + given.max(0) - math.log(units)
    return given - lam * prior


def test_soft_wpmi_equals_the_papers_formula():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(40, 8)).astype(np.float32)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt = rng.normal(size=(6, 8)).astype(np.float32)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    acts = rng.normal(size=(40, 5)).astype(np.float32)
    params = SoftWPMI(scale=10, top_k=7, lam=0.7)
    got = soft_wpmi(concept_probabilities(img, txt, 10), top_images(acts, 7), params,
                    unit_batch=2)
    want = reference_soft_wpmi(img @ txt.T, acts, 7, 10, 0.7)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-4)


def test_soft_wpmi_finds_a_planted_concept():
    """A unit firing on exactly the images of concept 3 is labelled 3, whatever else."""
    rng = np.random.default_rng(1)
    n, concepts = 300, 50
    truth = rng.integers(0, concepts, n)
    sims = rng.normal(0, 0.05, (n, concepts)).astype(np.float32)
    sims[np.arange(n), truth] += 0.5
    acts = rng.normal(size=(n, 4)).astype(np.float32)
    acts[truth == 3, 0] += 5
    acts[truth == 17, 2] += 5
    P = torch.softmax(10 * torch.from_numpy(sims), dim=1)
    best = soft_wpmi(P, top_images(acts, 5)).argmax(1).tolist()
    assert best[0] == 3 and best[2] == 17


# -- the stage ---------------------------------------------------------------------------------
def _label_args(out: Path, labeler: Path, *extra: str) -> list[str]:
    return ["--model", "vit_tiny_patch16_224", "--weights", "random", "--model-kwargs",
            "img_size=32", "patch_size=8", "depth=2", "embed_dim=48", "num_heads=2",
            "--dataset", "synthetic:48", "--out", str(out), "--topk", "4", "--workers", "0",
            "--device", "cpu", "--labeler", str(labeler), "--label-topk", "10",
            "--probe-images", "40", *extra]


def test_label_stage_end_to_end(tiny_clip, tmp_path, capsys):
    out = tmp_path / "atlas"
    concepts = tmp_path / "concepts.txt"
    concepts.write_text("circle\nsquare\nstripes\n<b>&amp;\"q\"</b>\ndots\ngradient\nring\n")
    assert main(["index", *_label_args(out, tiny_clip, "--concepts", str(concepts))]) == 0
    store = AtlasStore(out)
    probe = load_probe(store, 0)
    assert probe is not None and probe.numbers.tolist() == list(range(40))
    rode = load_probe_embeddings(store, load_labeler(str(tiny_clip)).id)
    assert rode is not None and rode[1].shape == (40, 32)
    assert main(["label", *_label_args(out, tiny_clip, "--concepts", str(concepts))]) == 0
    info = store.label_info()
    assert info["concepts"]["count"] == 7 and info["params"]["top_k"] == 10
    assert info["probe_images"] == 40
    for layer in (0, 1):
        labels = store.labels(layer)
        assert sorted(labels) == list(range(192))
        for top in labels.values():
            assert len(top) == 5
            scores = [t["score"] for t in top]
            assert scores == sorted(scores, reverse=True)
            assert len({t["concept"] for t in top}) == 5
    # the label stage's own pass over the probe images gives the index pass's embeddings
    run = tiny_run(out, "synthetic:48", fresh=False)
    run.config = run.config.replace(index_batch_size=7)
    (store.root / "index" / "probe" / "embeddings.npz").unlink()
    own = image_embeddings(run, load_labeler(str(tiny_clip)), probe.numbers)
    np.testing.assert_allclose(own, rode[1], atol=2e-3)
    # a rerun does nothing; other concepts redo every layer
    capsys.readouterr()
    assert main(["label", *_label_args(out, tiny_clip, "--concepts", str(concepts))]) == 0
    assert "nothing to do" in capsys.readouterr().err
    concepts.write_text("triangle\ncross\nnoise\n")
    before = json.loads(store.label_path(0).read_text())["fingerprint"]
    assert main(["label", *_label_args(out, tiny_clip, "--concepts", str(concepts))]) == 0
    assert json.loads(store.label_path(0).read_text())["fingerprint"] != before
    assert {t["concept"] for v in store.labels(0).values() for t in v} <= {
        "triangle", "cross", "noise"}


def test_concept_embeddings_are_shared_through_the_user_cache(tiny_clip, tmp_path,
                                                              monkeypatch):
    """A second atlas labelled by the same labeler and concepts reuses the first's concept
    embeddings (no text is embedded again), and labels as a fresh run does."""
    from pipeline.label import stage
    from pipeline.store import user_cache_dir

    monkeypatch.setenv("VIT_ATLAS_CACHE", str(tmp_path / "cache"))
    concepts = tmp_path / "concepts.txt"
    concepts.write_text("circle\nsquare\nstripes\ndots\ngradient\nring\n")
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        assert main(["index", *_label_args(out, tiny_clip, "--concepts", str(concepts))]) == 0
    assert main(["label", *_label_args(first, tiny_clip, "--concepts", str(concepts))]) == 0
    assert len(list((user_cache_dir() / "concepts").glob("text-*.npz"))) == 1
    calls = []
    encode = stage.Labeler.encode_texts
    monkeypatch.setattr(stage.Labeler, "encode_texts",
                        lambda self, texts, **kw: calls.append(texts) or encode(self, texts, **kw))
    assert main(["label", *_label_args(second, tiny_clip, "--concepts", str(concepts))]) == 0
    assert calls == []
    assert AtlasStore(second).labels(0) == AtlasStore(first).labels(0)
    # an unreadable cache file is made again, not trusted
    (cached,) = (user_cache_dir() / "concepts").glob("text-*.npz")
    cached.write_bytes(b"not an npz")
    for path in (second / "label").rglob("*"):
        if path.is_file():
            path.unlink()
    assert main(["label", *_label_args(second, tiny_clip, "--concepts", str(concepts))]) == 0
    assert calls and AtlasStore(second).labels(0) == AtlasStore(first).labels(0)


def test_bad_label_options_fail_before_anything_is_written(tmp_path, tiny_clip, capsys):
    out = tmp_path / "atlas"
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["build", *_label_args(out, tiny_clip, "--concepts", str(empty))]) == 2
    assert "holds no concepts" in capsys.readouterr().err
    assert main(["build", *_label_args(out, Path("open_clip:ViT-B-61/openai"))]) == 2
    assert "unknown open_clip model" in capsys.readouterr().err
    assert not out.exists()


def test_label_needs_an_index(tmp_path, tiny_clip, capsys):
    out = tmp_path / "atlas"
    assert main(["label", *_label_args(out, tiny_clip)]) == 2
    assert "no finished dataset index" in capsys.readouterr().err


def test_label_accuracy_counts_class_pure_units(tmp_path):
    """The accuracy check: class-pure units, and whether their words name the class."""
    from pipeline.index.results import LayerIndex, write_examples, write_layer_index
    from pipeline.label.evaluate import label_accuracy

    store = AtlasStore(tmp_path)
    classes = ["circle", "horizontal stripes", "vertical stripes"]
    write_examples(store, {"classes": classes, "examples": [
        {"id": str(i), "label": i % 3, "thumb": None} for i in range(30)]})
    top = np.array([[0, 3, 6, 9], [1, 4, 7, 2], [0, 1, 2, 5]])  # pure 0, 3/4 class 1, mixed
    z = np.zeros((3, 4), np.float32)
    write_layer_index(store, 0, LayerIndex(
        top_ids=top, top_scores=z, maps=np.zeros((3, 4, 1, 1), np.float32),
        hist_counts=np.zeros((3, 2), np.int64), hist_edges=np.zeros((3, 3), np.float32),
        mean=z[:, 0], std=z[:, 0], max=z[:, 0], top_classes=np.zeros((3, 1), np.int64),
        top_class_means=np.zeros((3, 1), np.float32)))
    labels = {0: {0: [{"concept": "circles", "score": 1}, {"concept": "red", "score": 0}],
                  1: [{"concept": "stripes", "score": 1}, {"concept": "a", "score": 0.5},
                      {"concept": "horizontal", "score": 0.1}],
                  2: [{"concept": "circle", "score": 1}]}}
    acc = label_accuracy(store, [0], labels=labels)
    # units 0 and 1 are class-pure (>= 70%); "stripes" names no single class
    assert acc == {0: {"pure_units": 2, "top1": 0.5, "top3": 1.0}}
