"""Foreground and background per unit: where on the object its top examples excite it.

Given each top example's patch map (the unit's activation per patch, ``rows x cols``) and the
example's object mask (nonzero = object, at the model's input size, after the image's own
resize and crop), a patch is *foreground* when at least half of its pixels are object.

- **share**: of the unit's positive patch activation on an example, the part on foreground
  patches, averaged over the top examples that have a mask (and some positive activation);
- **area**: those examples' mean share of foreground patches: the share a unit firing
  everywhere alike would get (chance level);
- **examples**: how many examples the two figures average;
- **background_masked** / **foreground_masked**: the masking experiment. The unit's mean
  activation on its top examples that have a mask, with the background (then the foreground)
  replaced by the image's mean colour, relative to its mean activation on the same examples
  unmasked (1 = unchanged; None without a usable example or when the unmasked mean is not
  positive). The index measures it in its maps pass (``slot_figures``) and keeps per top
  example its ``FIGURES`` (``LayerIndex.top_foreground``); ``unit_foreground`` averages them.

``normalized_entropy`` says how uniform a map's positive activation is (1 = uniform), and
``replace_region`` makes the masking experiment's inputs (background or foreground replaced by
the image's mean colour). Pure numpy: the numbers do not depend on batch size or sharding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FOREGROUND_PATCH = 0.5  # a patch is foreground when at least this share of its pixels is object
# Per top example, what the index keeps (``LayerIndex.top_foreground[..., i]``; NaN: no mask,
# or for ``share``/``area`` no positive activation): the example's foreground share and area,
# and the unit's activation (mean over patches) unmasked, background masked, foreground masked.
DECIMALS = 4  # of the figures in feature.json
FIGURES = ("share", "area", "score", "background_masked", "foreground_masked")


@dataclass(frozen=True)
class Foreground:
    """``share`` and ``area`` (None without a usable example) over ``examples`` examples, and
    the masking ratios (None where not measured)."""

    share: float | None
    area: float | None
    examples: int
    background_masked: float | None = None
    foreground_masked: float | None = None

    def to_dict(self) -> dict:
        """feature.json's ``foreground``, figures to ``DECIMALS`` decimals (float error of
        batch size or sharding stays below them).

        >>> Foreground(0.75, 0.25, 3, 0.9).to_dict()
        {'share': 0.75, 'area': 0.25, 'examples': 3, 'background_masked': 0.9, \
'foreground_masked': None}
        """
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, DECIMALS)

        return {"share": r(self.share), "area": r(self.area), "examples": self.examples,
                "background_masked": r(self.background_masked),
                "foreground_masked": r(self.foreground_masked)}


def patch_foreground(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Per patch of ``grid`` (rows, cols), the share of object pixels of ``mask`` (H, W; nonzero
    = object). The image is split into equal cells (H and W multiples of rows and cols); a
    grid that does not divide the mask (PiT's pooled stages) gets adaptive average pooling.

    >>> m = np.zeros((4, 4)); m[:2, :2] = 1; m[2, 2] = 1
    >>> patch_foreground(m, (2, 2)).tolist()
    [[1.0, 0.0], [0.0, 0.25]]
    """
    rows, cols = grid
    h, w = mask.shape
    if h % rows or w % cols:
        import torch

        obj = torch.as_tensor(np.asarray(mask) != 0, dtype=torch.float64)[None, None]
        return torch.nn.functional.adaptive_avg_pool2d(obj, (rows, cols))[0, 0].numpy()
    cells = (np.asarray(mask) != 0).reshape(rows, h // rows, cols, w // cols)
    return cells.mean(axis=(1, 3))


def foreground_share(maps: np.ndarray, patch_fg: np.ndarray, has_mask: np.ndarray) -> Foreground:
    """The unit's ``Foreground`` from its top examples' patch maps ``maps`` (k, rows, cols),
    their patches' object shares ``patch_fg`` (k, rows, cols) and ``has_mask`` (k,) bool.

    >>> maps = np.array([[[1.0, 3.0], [0.0, -2.0]], [[2.0, 2.0], [2.0, 2.0]]])
    >>> fg = np.array([[[1.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]]])
    >>> foreground_share(maps, fg, np.array([True, True]))
    Foreground(share=0.375, area=0.375, examples=2, background_masked=None, foreground_masked=None)
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
    found = float(normalized_entropies(np.asarray(heatmap)[None])[0])
    return None if math.isnan(found) else found


def normalized_entropies(heatmaps: np.ndarray) -> np.ndarray:
    """``normalized_entropy`` of each ``(rows, cols)`` map of ``heatmaps`` (``(..., rows,
    cols)``) at once, NaN where a map has no positive activation.

    >>> normalized_entropies(np.array([np.ones((2, 2)), np.zeros((2, 2))])).tolist()
    [1.0, nan]
    """
    maps = np.asarray(heatmaps, dtype=np.float64)
    p = np.clip(maps.reshape(-1, maps.shape[-2] * maps.shape[-1]), 0, None)
    total = p.sum(axis=1)
    out = np.full(len(p), np.nan)
    some = total > 0
    if p.shape[1] >= 2 and some.any():
        q = p[some] / total[some, None]
        terms = q * np.log(np.where(q > 0, q, 1.0))  # 0 log 0 = 0
        out[some] = np.abs(terms.sum(axis=1)) / np.log(p.shape[1])
    return out.reshape(maps.shape[:-2])


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
    >>> [(f.share, f.area, f.examples) for f in layer_foreground(ids, maps, masks.get)]
    [(0.5, 0.5, 1), (None, None, 0)]
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


def mask_transform(data_config: dict) -> Callable:
    """timm's eval transform of ``data_config`` (resize, centre crop) for masks: nearest
    neighbour, no normalization; gives a (3, H, W) tensor in [0, 1]."""
    from timm.data import create_transform

    cfg = {**data_config, "interpolation": "nearest", "mean": (0.0, 0.0, 0.0),
           "std": (1.0, 1.0, 1.0)}
    return create_transform(**cfg, is_training=False)


def transform_mask(image: Any, transform: Callable) -> np.ndarray:
    """A mask image (PIL, nonzero = object) through ``transform`` (``mask_transform``), as an
    ``(H, W)`` bool array."""
    return transform(image.convert("L").convert("RGB"))[0].numpy() > 0


def load_mask(path: Path, data_config: dict) -> np.ndarray | None:
    """The mask PNG at ``path`` (nonzero = object) through the model's own resize and centre
    crop (timm's eval transform of ``data_config``) with nearest-neighbour interpolation, as an
    ``(H, W)`` bool array at the input size; None when there is no such file."""
    if not Path(path).is_file():
        return None
    from PIL import Image

    with Image.open(path) as im:
        return transform_mask(im, mask_transform(data_config))


@dataclass(frozen=True)
class MaskReader:
    """Picklable ``(id, carried mask or None, image size) -> (H, W) bool mask or None`` for
    the index's DataLoader workers. In order: the mask the source carries (a WebDataset
    ``mask.png``); with ``boxes`` (an ImageNet LOC file read by ``data.boxes``), the boxes of
    the example's image id drawn at its original size; with ``root`` (``--masks DIR``),
    ``root/<id>.png``. Each goes through ``transform`` (``mask_transform`` of the model's data
    config), as the image does.

    >>> from PIL import Image
    >>> read = MaskReader(None, lambda im: __import__("torch").zeros(3, 2, 2) + 1)
    >>> read("a/b.jpg", Image.new("L", (4, 4))).tolist(), read("a/b.jpg", None)
    ([[True, True], [True, True]], None)
    """

    root: str | None
    transform: Callable
    boxes: dict[str, tuple] | None = None

    @classmethod
    def for_option(cls, masks: str | None, transform: Callable) -> MaskReader:
        """The reader of ``--masks`` (a directory of PNGs, or a ``.csv`` LOC box file, or
        None: only masks the source carries)."""
        if masks is not None and str(masks).lower().endswith(".csv"):
            from pipeline.data.boxes import read_loc_boxes

            return cls(None, transform, read_loc_boxes(masks))
        return cls(None if masks is None else str(masks), transform)

    def __call__(self, ident: str, carried: Any = None,
                 size: tuple[int, int] | None = None) -> np.ndarray | None:
        if carried is not None:
            return transform_mask(carried, self.transform)
        if self.boxes is not None:
            from pipeline.data.boxes import box_key, boxes_mask

            found = self.boxes.get(box_key(ident))
            if found is None or size is None:
                return None
            return transform_mask(boxes_mask(found, size), self.transform)
        if self.root is None:
            return None
        path = Path(self.root, ident).with_suffix(".png")
        if not path.is_file():
            return None
        from PIL import Image

        with Image.open(path) as im:
            return transform_mask(im, self.transform)


def replace_regions(pixels: Any, masks: Any, region: str) -> Any:
    """Batched ``replace_region`` in torch: ``pixels`` (n, C, H, W) with ``region`` of
    ``masks`` (n, H, W bool) replaced by each image's mean colour (the model's normalization
    is affine per channel, so doing it on normalized inputs is the same).

    >>> import torch
    >>> x = torch.arange(8.0).reshape(1, 2, 2, 2)
    >>> m = torch.tensor([[[True, False], [False, False]]])
    >>> replace_regions(x, m, "background")[0, 0].tolist()
    [[0.0, 1.5], [1.5, 1.5]]
    """
    import torch

    if region not in ("background", "foreground"):
        raise ValueError(f"region must be background or foreground, not {region!r}")
    where = ~masks if region == "background" else masks
    mean = pixels.mean(dim=(2, 3), keepdim=True).expand_as(pixels)
    return torch.where(where[:, None].to(pixels.device), mean, pixels)


def slot_figures(maps: np.ndarray, background: np.ndarray, foreground: np.ndarray,
                 patch_fg: np.ndarray) -> np.ndarray:
    """Per top example, its ``FIGURES`` (M, 5) float32 from its patch maps unmasked ``maps``,
    with the background masked ``background`` and the foreground masked ``foreground`` (each
    (M, rows, cols)) and its patches' object shares ``patch_fg`` (M, rows, cols). An example
    with no positive activation has NaN share and area.

    >>> maps = np.array([[[1.0, 3.0]]]); fg = np.array([[[1.0, 0.0]]])
    >>> slot_figures(maps, maps / 2, maps * 0, fg).tolist()
    [[0.25, 0.5, 2.0, 1.0, 0.0]]
    """
    maps = np.asarray(maps, dtype=np.float64)
    flat = maps.reshape(len(maps), -1)
    positive = np.clip(flat, 0, None)
    on = (np.asarray(patch_fg) >= FOREGROUND_PATCH).reshape(len(maps), -1)
    total = positive.sum(1)
    out = np.full((len(maps), len(FIGURES)), np.nan)
    ok = total > 0
    out[ok, 0] = (positive * on).sum(1)[ok] / total[ok]
    out[ok, 1] = on.mean(1)[ok]
    out[:, 2] = flat.mean(1)
    out[:, 3] = np.asarray(background, np.float64).reshape(len(maps), -1).mean(1)
    out[:, 4] = np.asarray(foreground, np.float64).reshape(len(maps), -1).mean(1)
    return out.astype(np.float32)


def _ratio(masked: np.ndarray, plain: np.ndarray) -> float | None:
    if not len(plain) or plain.mean() <= 0:
        return None
    return float(masked.mean() / plain.mean())


def unit_foreground(figures: np.ndarray) -> Foreground:
    """A unit's ``Foreground`` from its top examples' ``FIGURES`` (k, 5) (NaN rows: no mask).

    >>> figs = np.array([[0.5, 0.25, 2.0, 1.0, 0.5], [np.nan, np.nan, 1.0, 0.5, 0.0],
    ...                  [np.nan] * 5])
    >>> f = unit_foreground(figs)
    >>> f.share, f.area, f.examples, f.background_masked, round(f.foreground_masked, 4)
    (0.5, 0.25, 1, 0.5, 0.1667)
    """
    f = np.asarray(figures, dtype=np.float64)
    use = ~np.isnan(f[:, 0])
    masked = ~np.isnan(f[:, 2])
    plain = f[masked, 2]
    if not use.any():
        return Foreground(None, None, 0, _ratio(f[masked, 3], plain),
                          _ratio(f[masked, 4], plain))
    return Foreground(float(f[use, 0].mean()), float(f[use, 1].mean()), int(use.sum()),
                      _ratio(f[masked, 3], plain), _ratio(f[masked, 4], plain))


def atlas_foreground(store: Any, layer: Any, index: Any, ids: list[str]
                     ) -> list[Foreground] | None:
    """Each channel's ``Foreground`` (row = channel of ``index``, a ``LayerIndex`` by channel)
    when the atlas was indexed with masks: from the figures the index measured
    (``LayerIndex.top_foreground``), else (an index of format 5) read again from ``--masks
    DIR`` (a PNG per example at its id's relative path, suffix ``.png``); None otherwise."""
    figures = getattr(index, "top_foreground", None)
    if figures is not None:
        filled = index.top_ids >= 0
        return [unit_foreground(figures[row][filled[row]]) for row in range(len(figures))]
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
