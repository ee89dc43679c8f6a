"""Masks from elsewhere than a --masks folder: a WebDataset ``mask.png`` per sample, and an
ImageNet LOC box file. Each must give the index the same foreground and masking figures as
the same masks written as a folder of PNGs (tested against brute force in test_masking)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.data import synthetic
from pipeline.data.boxes import boxes_mask, read_loc_boxes
from pipeline.data.sources import open_source
from pipeline.index.results import load_layer_index
from pipeline.index.stage import run_index
from tests.index.support import tiny_run

N, SIZE, CHANNELS = 20, 40, "0:10"


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _folder(root: Path, masks: dict[str, Image.Image]) -> Path:
    """The demo images as PNGs under ``root/img/c/`` and ``masks`` under ``root/masks/c/``."""
    for i in range(N):
        image, _ = synthetic.make_example(i, 1, SIZE)
        (root / "img" / "c").mkdir(parents=True, exist_ok=True)
        image.save(root / "img" / "c" / f"s{i:04d}.png")
        if f"s{i:04d}" in masks:
            (root / "masks" / "c").mkdir(parents=True, exist_ok=True)
            masks[f"s{i:04d}"].save(root / "masks" / "c" / f"s{i:04d}.png")
    return root


def _figures(run) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for i in run.layers:
        index = load_layer_index(run.store, i)
        out[i] = (index.top_scores, index.top_foreground)
    return out


def _same(a, b) -> None:
    for i in a:
        np.testing.assert_allclose(a[i][0], b[i][0], atol=1e-5)
        assert a[i][1] is not None and b[i][1] is not None
        np.testing.assert_array_equal(np.isnan(a[i][1]), np.isnan(b[i][1]))
        np.testing.assert_allclose(a[i][1], b[i][1], atol=1e-5, rtol=1e-4)


def test_webdataset_mask_png_equals_a_mask_folder(tmp_path):
    masks = {f"s{i:04d}": synthetic.make_mask(i, 1, SIZE) for i in range(N)}
    _folder(tmp_path, masks)
    (tmp_path / "wds").mkdir()
    with tarfile.open(tmp_path / "wds" / "t-validation-0000.tar", "w") as tar:
        for i in range(N):
            image, label = synthetic.make_example(i, 1, SIZE)
            _add(tar, f"s{i:04d}.png", _png(image))
            _add(tar, f"s{i:04d}.cls", str(label).encode())
            _add(tar, f"s{i:04d}.mask.png", _png(masks[f"s{i:04d}"]))
    source = open_source(f"webdataset:{tmp_path / 'wds'}")
    assert source.mask_col == "mask.png" and source.image_col == "png"
    first = source.decoder(next(iter(source.records())))
    assert np.array_equal(np.asarray(first.mask), np.asarray(masks["s0000"]))
    wds = tiny_run(tmp_path / "a", f"webdataset:{tmp_path / 'wds'}", channels=CHANNELS)
    run_index(wds)  # no --masks: the tar's own masks
    folder = tiny_run(tmp_path / "b", f"imagefolder:{tmp_path / 'img'}", channels=CHANNELS,
                      masks=str(tmp_path / "masks"))
    run_index(folder)
    _same(_figures(wds), _figures(folder))
    figs = _figures(wds)[0][1]
    assert (~np.isnan(figs[..., 3])).mean() > 0.5  # the masking experiment ran on most


def test_loc_box_file_equals_the_boxes_drawn_as_masks(tmp_path):
    rng = np.random.default_rng(0)
    boxes = {}
    for i in range(N):
        if i % 5 == 4:
            continue  # no box for this image: no mask
        k = int(rng.integers(1, 3))
        xy = rng.integers(0, SIZE, size=(k, 4))
        boxes[f"s{i:04d}"] = tuple((int(min(a, c)), int(min(b, d)), int(max(a, c)),
                                    int(max(b, d))) for a, b, c, d in xy)
    csv = tmp_path / "LOC_val_solution.csv"
    csv.write_text("ImageId,PredictionString\n" + "".join(
        f"{key}," + " ".join(f"n01440764 {x0} {y0} {x1} {y1}" for x0, y0, x1, y1 in bs)
        + " \n" for key, bs in boxes.items()))
    assert read_loc_boxes(csv) == boxes
    _folder(tmp_path, {key: boxes_mask(bs, (SIZE, SIZE)) for key, bs in boxes.items()})
    drawn = np.asarray(Image.open(tmp_path / "masks" / "c" / "s0000.png"))
    x0, y0, x1, y1 = boxes["s0000"][0]
    assert (drawn[y0:y1 + 1, x0:x1 + 1] == 255).all()  # corners inclusive, as in the file
    spec = f"imagefolder:{tmp_path / 'img'}"
    from_csv = tiny_run(tmp_path / "a", spec, channels=CHANNELS, masks=str(csv))
    run_index(from_csv)
    from_png = tiny_run(tmp_path / "b", spec, channels=CHANNELS, masks=str(tmp_path / "masks"))
    run_index(from_png)
    _same(_figures(from_csv), _figures(from_png))
