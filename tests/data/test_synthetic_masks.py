"""The demo generator's object masks: deterministic, aligned with the drawing, exported at the
images' relative paths."""

from __future__ import annotations

import numpy as np
from PIL import Image

from pipeline.data.synthetic import CLASS_NAMES, export_imagefolder, make_example, make_mask


def test_masks_follow_the_drawing():
    for index in range(2 * len(CLASS_NAMES)):
        mask = np.asarray(make_mask(index, 1, 48)) > 0
        assert np.array_equal(mask, np.asarray(make_mask(index, 1, 48)) > 0)
        name = CLASS_NAMES[index % len(CLASS_NAMES)]
        if name == "gradient":
            assert not mask.any()
            continue
        assert 0 < mask.mean() < 1, name
        img = np.asarray(make_example(index, 1, 48)[0], dtype=np.float32)
        inside, outside = img[mask].mean(0), img[~mask].mean(0)
        assert np.abs(inside - outside).max() > 0.1 * 255, name  # object and rest differ


def test_export_writes_masks_at_the_same_relative_path(tmp_path):
    root = export_imagefolder(tmp_path / "img", 13, "validation", 32, masks=tmp_path / "masks")
    images = sorted(p.relative_to(root) for p in root.rglob("*.png"))
    masks = sorted(p.relative_to(tmp_path / "masks") for p in (tmp_path / "masks").rglob("*.png"))
    assert images == masks and len(images) == 13
    first = np.asarray(Image.open(tmp_path / "masks" / images[0]).convert("L")) > 0
    index = int(images[0].stem.rsplit("-", 1)[1])
    assert np.array_equal(first, np.asarray(make_mask(index, 1, 32)) > 0)
