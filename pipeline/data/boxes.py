"""Object masks from bounding boxes: ImageNet's localization file (``LOC_val_solution.csv``,
``LOC_train_solution.csv``) read into boxes per image id, and boxes drawn as a mask.

The file has a header ``ImageId,PredictionString``; each prediction string repeats
``<synset> <x_min> <y_min> <x_max> <y_max>`` in pixels of the original image.
"""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image, ImageDraw

Box = tuple[int, int, int, int]  # x_min, y_min, x_max, y_max (inclusive), original pixels


def parse_boxes(prediction: str) -> tuple[Box, ...]:
    """The boxes of one ``PredictionString`` (the synsets are dropped).

    >>> parse_boxes("n01751748 10 20 30 40 n01751748 0 0 5 5")
    ((10, 20, 30, 40), (0, 0, 5, 5))
    """
    parts = prediction.split()
    if len(parts) % 5:
        raise ValueError(f"a box string has 5 fields per box, not {len(parts)} fields")
    return tuple(tuple(int(float(v)) for v in parts[i + 1:i + 5])  # type: ignore[misc]
                 for i in range(0, len(parts), 5))


def read_loc_boxes(path: str | Path) -> dict[str, tuple[Box, ...]]:
    """``{ImageId: boxes}`` of an ImageNet LOC CSV file.

    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "loc.csv")
    >>> _ = open(f, "w").write("ImageId,PredictionString\\nimg_1,n0 1 2 3 4 \\n")
    >>> read_loc_boxes(f)
    {'img_1': ((1, 2, 3, 4),)}
    """
    out: dict[str, tuple[Box, ...]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            out[row["ImageId"].strip()] = parse_boxes(row.get("PredictionString") or "")
    return out


def boxes_mask(boxes: tuple[Box, ...], size: tuple[int, int]) -> Image.Image:
    """A mode ``L`` mask of ``size`` (width, height): 255 inside any box, 0 elsewhere.

    >>> import numpy as np
    >>> np.asarray(boxes_mask(((1, 0, 2, 1),), (4, 2))).tolist()
    [[0, 255, 255, 0], [0, 255, 255, 0]]
    """
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for x0, y0, x1, y1 in boxes:
        draw.rectangle((x0, y0, x1, y1), fill=255)
    return mask


def box_key(ident: str) -> str:
    """The LOC file's ImageId of an example id: its file name without suffix.

    >>> box_key("n01440764/ILSVRC2012_val_00000293.JPEG")
    'ILSVRC2012_val_00000293'
    """
    return Path(ident).name.split(".")[0]
