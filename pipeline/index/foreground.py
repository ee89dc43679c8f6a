"""Foreground and background per unit: where on the object its top examples excite it.

Given each top example's patch map (the unit's activation per patch, ``rows x cols``) and the
example's object mask (nonzero = object, at the model's input size, after the image's own
resize and crop), a patch is *foreground* when at least half of its pixels are object.

- **share**: of the unit's positive patch activation on an example, the part on foreground
  patches, averaged over the top examples that have a mask (and some positive activation);
- **area**: those examples' mean share of foreground patches: the share a unit firing
  everywhere alike would get (chance level);
- **examples**: how many examples the two figures average.

``normalized_entropy`` says how uniform a map's positive activation is (1 = uniform), and
``replace_region`` makes the masking experiment's inputs (background or foreground replaced by
the image's mean colour). Pure numpy: the numbers do not depend on batch size or sharding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FOREGROUND_PATCH = 0.5  # a patch is foreground when at least this share of its pixels is object


@dataclass(frozen=True)
class Foreground:
    """``share`` and ``area`` (None without a usable example) over ``examples`` examples."""

    share: float | None
    area: float | None
    examples: int

    def to_dict(self) -> dict:
        """feature.json's ``foreground``.

        >>> Foreground(0.75, 0.25, 3).to_dict()
        {'share': 0.75, 'area': 0.25, 'examples': 3}
        """
        return {"share": self.share, "area": self.area, "examples": self.examples}


def patch_foreground(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Per patch of ``grid`` (rows, cols), the share of object pixels of ``mask`` (H, W; nonzero
    = object). The image is split into equal cells (H and W multiples of rows and cols).

    >>> m = np.zeros((4, 4)); m[:2, :2] = 1; m[2, 2] = 1
    >>> patch_foreground(m, (2, 2)).tolist()
    [[1.0, 0.0], [0.0, 0.25]]
    """
    rows, cols = grid
    h, w = mask.shape
    if h % rows or w % cols:
        raise ValueError(f"a {h}x{w} mask does not split into a {rows}x{cols} grid")
    cells = (np.asarray(mask) != 0).reshape(rows, h // rows, cols, w // cols)
    return cells.mean(axis=(1, 3))


def foreground_share(maps: np.ndarray, patch_fg: np.ndarray, has_mask: np.ndarray) -> Foreground:
    """The unit's ``Foreground`` from its top examples' patch maps ``maps`` (k, rows, cols),
    their patches' object shares ``patch_fg`` (k, rows, cols) and ``has_mask`` (k,) bool.

    >>> maps = np.array([[[1.0, 3.0], [0.0, -2.0]], [[2.0, 2.0], [2.0, 2.0]]])
    >>> fg = np.array([[[1.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]]])
    >>> foreground_share(maps, fg, np.array([True, True]))
    Foreground(share=0.375, area=0.375, examples=2)
    """
    maps = np.asarray(maps, dtype=np.float64)
    positive = np.clip(maps, 0, None).reshape(len(maps), -1)
    on = (np.asarray(patch_fg) >= FOREGROUND_PATCH).reshape(len(maps), -1)
    total = positive.sum(1)
    use = np.asarray(has_mask, dtype=bool) & (total > 0)
    if not use.any():
        return Foreground(None, None, 0)
    share = (positive * on).sum(1)[use] / total[use]
    return Foreground(float(share.mean()), float(on[use].mean(1).mean()), int(use.sum()))


def normalized_entropy(heatmap: np.ndarray) -> float | None:
    """Entropy of the map's positive activation as a distribution over patches, divided by
    its maximum (log of the patch count): 1 = uniform, 0 = one patch; None without any.

    >>> normalized_entropy(np.ones((2, 2))), normalized_entropy(np.array([[5.0, 0], [-1, 0]]))
    (1.0, 0.0)
    """
    p = np.clip(np.asarray(heatmap, dtype=np.float64).ravel(), 0, None)
    if p.size < 2 or p.sum() <= 0:
        return None
    p = p / p.sum()
    nz = p[p > 0]
    return float(abs((nz * np.log(nz)).sum()) / np.log(p.size))


def replace_region(image: np.ndarray, mask: np.ndarray, region: str) -> np.ndarray:
    """``image`` (C, H, W) with its ``region`` (``background`` or ``foreground`` of ``mask``,
    H x W, nonzero = object) replaced by the image's mean colour.

    >>> img = np.arange(8.0).reshape(2, 2, 2); m = np.array([[1, 0], [0, 0]])
    >>> replace_region(img, m, "background")[0].tolist()
    [[0.0, 1.5], [1.5, 1.5]]
    """
    if region not in ("background", "foreground"):
        raise ValueError(f"region must be background or foreground, not {region!r}")
    obj = np.asarray(mask) != 0
    out = np.array(image, dtype=np.float32, copy=True)
    mean = out.reshape(out.shape[0], -1).mean(1)
    where = ~obj if region == "background" else obj
    out[:, where] = mean[:, None]
    return out


def layer_foreground(top_ids: np.ndarray, maps: np.ndarray,
                     mask_of: Callable[[int], np.ndarray | None]) -> list[Foreground]:
    """Each unit's ``Foreground`` from a layer index's ``top_ids`` (units, k; -1 = empty) and
    ``maps`` (units, k, rows, cols); ``mask_of(example number)`` gives that example's mask at
    the model's input size (None: no mask). Masks are read once per example.

    >>> ids = np.array([[0, 1], [1, -1]]); maps = np.ones((2, 2, 1, 2))
    >>> masks = {0: np.array([[1, 0]]), 1: None}
    >>> [f.to_dict() for f in layer_foreground(ids, maps, masks.get)]
    [{'share': 0.5, 'area': 0.5, 'examples': 1}, {'share': None, 'area': None, 'examples': 0}]
    """
    grid = maps.shape[-2:]
    cache: dict[int, np.ndarray | None] = {}

    def fg(number: int) -> np.ndarray | None:
        if number not in cache:
            mask = mask_of(number) if number >= 0 else None
            cache[number] = None if mask is None else patch_foreground(mask, grid)
        return cache[number]

    out = []
    for row in range(top_ids.shape[0]):
        shares = [fg(int(n)) for n in top_ids[row]]
        have = np.array([s is not None for s in shares])
        stacked = np.stack([np.zeros(grid) if s is None else s for s in shares])
        out.append(foreground_share(maps[row], stacked, have))
    return out


def load_mask(path: Path, data_config: dict) -> np.ndarray | None:
    """The mask PNG at ``path`` (nonzero = object) through the model's own resize and centre
    crop (timm's eval transform of ``data_config``) with nearest-neighbour interpolation, as an
    ``(H, W)`` bool array at the input size; None when there is no such file."""
    if not Path(path).is_file():
        return None
    from PIL import Image
    from timm.data import create_transform

    cfg = {**data_config, "interpolation": "nearest", "mean": (0.0, 0.0, 0.0),
           "std": (1.0, 1.0, 1.0)}
    transform = create_transform(**cfg, is_training=False)
    with Image.open(path) as im:
        tensor = transform(im.convert("L").convert("RGB"))
    return tensor[0].numpy() > 0


def atlas_foreground(store: Any, layer: Any, index: Any, ids: list[str]
                     ) -> list[Foreground] | None:
    """Each channel's ``Foreground`` (row = channel of ``index``, a ``LayerIndex`` by channel)
    when the atlas was indexed with ``masks`` (``--masks DIR``: a PNG per example at its id's
    relative path, suffix ``.png``); None otherwise."""
    config = store.manifest().get("config", {}) if store.exists() else {}
    root = config.get("masks")
    if not root or index is None:
        return None
    import timm
    import torch

    from pipeline.models.load import data_config

    kwargs = dict(config.get("model_kwargs") or {})
    with torch.device("meta"):
        net = timm.create_model(config["model"], pretrained=False, **kwargs)
    cfg = data_config(net, kwargs)

    def mask_of(number: int) -> np.ndarray | None:
        if not 0 <= number < len(ids):
            return None
        return load_mask(Path(root, ids[number]).with_suffix(".png"), cfg)

    return layer_foreground(index.top_ids, index.maps, mask_of)
