"""Shared helpers for the index and source tests: a tiny random ViT, local datasets written
by the tests (image folders, WebDataset tars with odd files), and a brute-force reference."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.config import AtlasConfig
from pipeline.data import synthetic
from pipeline.data.sources import open_source
from pipeline.index.scan import Scanner
from pipeline.models import create_model, eval_transform, spec_for
from pipeline.models.load import weights_id
from pipeline.runtime import Run, prepare
from pipeline.store import AtlasStore

TINY = "vit_tiny_patch16_224"
TINY_KW = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 48, "num_heads": 2}
HTML_NAME = "<b>\"cat\" & 'dog'</b>"


def tiny_config(out: Path, dataset: str, **overrides) -> AtlasConfig:
    return AtlasConfig().replace(
        model=TINY, weights="random", model_kwargs=dict(TINY_KW), dataset=dataset, out=str(out),
        topk=4, index_batch_size=8, workers=0, checkpoint_every=1, device="cpu").replace(
        **overrides)


def tiny_run(out: Path, dataset: str, fresh: bool = True, **overrides) -> Run:
    """A Run on the tiny model. ``fresh=False`` reopens an existing atlas directory without
    rewriting its manifest (as a second process would)."""
    cfg = tiny_config(out, dataset, **overrides)
    if fresh:
        return prepare(cfg)
    m = cfg.model
    model = create_model(m.name, m.weights, m.kwargs, cfg.seed)
    spec = spec_for(model, m.name, m.kwargs)
    return Run(cfg, model, spec, AtlasStore(cfg.runtime.out), torch.device("cpu"),
               weights_id(m.weights, cfg.seed))


def brute_force_scores(run: Run) -> tuple[dict[int, np.ndarray], list[int], list[int | None]]:
    """Every example's scores ``{layer: (n, units)}`` (NaN rows for undecodable ones), with
    the stream's labels, computed the straightforward way: one image at a time, the mean of
    its full patch-token activations (not the scan's pooled hooks)."""
    cfg = run.config.index
    source = open_source(cfg.dataset, cfg.split, image_size=run.spec.input_size[-1])
    transform = eval_transform(run.model, run.config.model.kwargs)
    layers = [run.spec.layers[i] for i in run.layers]
    units = {layer.index: run.units(layer.index) for layer in layers}
    rows: dict[int, list[np.ndarray]] = {layer.index: [] for layer in layers}
    labels: list[int | None] = []
    skipped: list[int] = []
    with Scanner(run.model, layers, units, 1, run.device) as scanner:
        for rec in source.records():
            if cfg.max_images is not None and rec.number >= cfg.max_images:
                break
            try:
                dec = source.decoder(rec)
                x = transform(dec.image)[None]
            except Exception:
                skipped.append(rec.number)
                labels.append(rec.label)
                for index in rows:
                    rows[index].append(np.full(len(units[index]), np.nan, np.float32))
                continue
            labels.append(dec.label)
            for index, a in scanner.activations(x).items():  # full maps, plain float64 mean
                rows[index].append(a[0].double().mean(0).float().numpy())
    return {i: np.stack(r) for i, r in rows.items()}, skipped, labels


# -- local datasets --------------------------------------------------------------------------
def png_bytes(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def write_imagefolder(root: Path, n: int, size: int = 40) -> Path:
    """``n`` synthetic images as ``root/<class>/<id>.png`` (synthetic's own exporter)."""
    return synthetic.export_imagefolder(root, n, split="validation", size=size)


def odd_images() -> dict[str, bytes]:
    """File name → bytes of images in unusual modes and sizes, plus broken ones."""
    base, _ = synthetic.make_example(3, 1, 48)
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(base.size))
    jpeg = png_bytes(base, "JPEG", quality=90)
    return {
        "gray.png": png_bytes(base.convert("L")),
        "palette.png": png_bytes(base.convert("P", palette=Image.Palette.ADAPTIVE)),
        "palette_transparent.gif": png_bytes(base.convert("P"), "GIF", transparency=0),
        "cmyk.jpg": png_bytes(base.convert("CMYK"), "JPEG"),
        "rgba.png": png_bytes(rgba),
        "photo.webp": png_bytes(base, "WEBP"),
        "one_pixel.png": png_bytes(Image.new("RGB", (1, 1), (200, 10, 10))),
        "wide.png": png_bytes(base.resize((3000, 50))),
        "sixteen_bit.png": png_bytes(Image.fromarray(
            (np.linspace(0, 65535, 48 * 48).reshape(48, 48)).astype(np.uint16))),
        "corrupt.jpg": b"this is not an image at all" * 10,
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "empty.png": b"",
    }


BROKEN = {"corrupt.jpg", "truncated.jpg", "empty.png"}


def write_odd_imagefolder(root: Path) -> Path:
    files = odd_images()
    for i, (name, data) in enumerate(sorted(files.items())):
        cls = root / ("odd" if i % 2 else "even")
        cls.mkdir(parents=True, exist_ok=True)
        (cls / name).write_bytes(data)
    return root


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_webdataset(root: Path, n: int, shards: int = 2, split: str = "validation",
                     class_names: list[str] | None = None, broken: dict[int, bytes] | None = None,
                     size: int = 40) -> Path:
    """``n`` synthetic examples in ``shards`` tars, timm/imagenet-1k-wds style:
    ``{key}.jpg`` + ``{key}.cls`` (+ ``{key}.json`` with a class name when given)."""
    root.mkdir(parents=True, exist_ok=True)
    per = -(-n // shards)
    for s in range(shards):
        with tarfile.open(root / f"tiny-{split}-{s:04d}.tar", "w") as tar:
            for i in range(s * per, min(n, (s + 1) * per)):
                image, label = synthetic.make_example(i, 1, size)
                key = f"sample{i:05d}"
                data = (broken or {}).get(i) or png_bytes(image, "JPEG", quality=92)
                _add(tar, f"{key}.jpg", data)
                _add(tar, f"{key}.cls", str(label).encode())
                if class_names is not None:
                    meta = {"class_name": class_names[label % len(class_names)], "label": label}
                    _add(tar, f"{key}.json", json.dumps(meta).encode())
    return root


def assert_same_index(a, b, atol: float = 1e-5) -> None:
    """Two LayerIndex results agree: identical ids except among near-tied scores."""
    assert a.top_ids.shape == b.top_ids.shape
    np.testing.assert_allclose(a.top_scores, b.top_scores, atol=atol, rtol=0)
    differ = a.top_ids != b.top_ids
    if differ.any():  # only where a near-tie could swap two examples
        gaps = np.abs(np.diff(a.top_scores, axis=1))
        near = np.zeros_like(differ)
        near[:, 1:] |= gaps <= atol
        near[:, :-1] |= gaps <= atol
        assert near[differ].all(), "ids differ where scores are not tied"
    np.testing.assert_allclose(a.bottom_scores, b.bottom_scores, atol=atol, rtol=0)
    differ = a.bottom_ids != b.bottom_ids
    if differ.any():
        gaps = np.abs(np.diff(a.bottom_scores, axis=1))
        near = np.zeros_like(differ)
        near[:, 1:] |= gaps <= atol
        near[:, :-1] |= gaps <= atol
        assert near[differ].all(), "bottom ids differ where scores are not tied"
    np.testing.assert_allclose(a.layer_mean, b.layer_mean, atol=atol, rtol=0)
    np.testing.assert_allclose(a.layer_std, b.layer_std, atol=10 * atol, rtol=0)
    np.testing.assert_array_equal(a.hist_counts.sum(1), b.hist_counts.sum(1))
    np.testing.assert_allclose(a.mean, b.mean, atol=atol, rtol=0)
    np.testing.assert_allclose(a.std, b.std, atol=10 * atol, rtol=0)
    np.testing.assert_allclose(a.max, b.max, atol=atol, rtol=0)
    np.testing.assert_allclose(a.maps, b.maps, atol=1e-4, rtol=0)


def assert_same_probe(store_a, store_b, layers, atol: float = 2e-3) -> None:
    """Two indexes recorded the same probe set: the same images, the same profiles."""
    from pipeline.index.results import load_probe

    for index in layers:
        a, b = load_probe(store_a, index), load_probe(store_b, index)
        assert a is not None and b is not None
        np.testing.assert_array_equal(a.numbers, b.numbers)
        np.testing.assert_array_equal(a.units, b.units)
        np.testing.assert_allclose(a.scores(), b.scores(), atol=atol, rtol=0)
