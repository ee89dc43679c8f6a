"""One feature: its page (Markdown with data in front matter) and its ``feature.json``.

The page's Markdown holds the data as YAML front matter, read by the lean ``feature.html``
template (escaping every string with ``|e``); its body is a single JSON script with the
quantized heatmaps. No per-example HTML goes through Markdown, which keeps mkdocs fast.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from pipeline.index.results import Examples
from pipeline.pages import urls
from pipeline.pages.assets import (
    encode_heatmaps,
    heatmap_scale,
    histogram_path,
    histogram_x,
    significant_decimals,
)
from pipeline.pages.cite import bibtex, cite_key
from pipeline.pages.data import AtlasView, LayerView
from pipeline.pages.markup import front_matter, num, script_json
from pipeline.store import FORMAT_VERSION


@dataclass
class SiteInfo:
    """What every feature page of one model shares."""

    model: str
    slug: str
    weights: str
    atlas_version: str
    dataset: str
    images_seen: int | None
    class_names: list[str] | None
    units_by_layer: dict[int, list[int]]  # units that have a page, per layer with pages
    year: int
    site_url: str | None = None  # absolute base URL, when mkdocs.yml sets one

    @classmethod
    def of(cls, atlas: AtlasView, units_by_layer: dict[int, list[int]], year: int,
           site_url: str | None) -> SiteInfo:
        ex = atlas.examples
        return cls(atlas.model, atlas.slug, atlas.weights, atlas.atlas_version, atlas.dataset,
                   None if ex is None else ex.images_seen, None if ex is None else ex.class_names,
                   units_by_layer, year, site_url)


def _nearest(units: list[int], unit: int) -> int:
    i = bisect.bisect_left(units, unit)
    if i == len(units):
        return units[-1]
    if i == 0 or units[i] == unit:
        return units[i]
    return units[i] if units[i] - unit < unit - units[i - 1] else units[i - 1]


def neighbours(info: SiteInfo, layer: int, unit: int) -> dict[str, str | None]:
    """Relative URLs (from the feature page) of the previous/next unit and layer."""
    here = urls.feature_dir(info.slug, layer, unit)
    units = info.units_by_layer[layer]
    i = bisect.bisect_left(units, unit)
    layers = sorted(info.units_by_layer)
    j = layers.index(layer)

    def unit_url(u: int | None) -> str | None:
        return None if u is None else urls.relative(urls.feature_dir(info.slug, layer, u) + "/",
                                                     here)

    def layer_url(other: int | None) -> str | None:
        if other is None:
            return None
        u = _nearest(info.units_by_layer[other], unit)
        return urls.relative(urls.feature_dir(info.slug, other, u) + "/", here)

    return {
        "prev_unit": unit_url(units[i - 1] if i > 0 else None),
        "next_unit": unit_url(units[i + 1] if i + 1 < len(units) else None),
        "prev_layer": layer_url(layers[j - 1] if j > 0 else None),
        "next_layer": layer_url(layers[j + 1] if j + 1 < len(layers) else None),
    }


def _round(x: float, digits: int = 6) -> float | None:
    x = float(x)
    return float(f"{x:.{digits}g}") if math.isfinite(x) else None


def _top_slots(view: LayerView, unit: int) -> list[int]:
    if view.index is None:
        return []
    return [i for i, n in enumerate(view.index.top_ids[unit]) if n >= 0]


def _recipe_summary(recipe: dict | None) -> str:
    if not recipe:
        return "–"
    parts = [str(recipe.get("name", "custom"))]
    if "steps" in recipe:
        steps = recipe["steps"]
        parts.append(f"{steps} step{'s' if steps != 1 else ''}")
    if "lr" in recipe:
        parts.append(f"lr {recipe['lr']}")
    return ", ".join(parts)


def example_path(slug: str, thumbs: list[str | None], n: int) -> str | None:
    """Site path of example ``n``'s thumbnail (named by number: ids may hold any character)."""
    rel = thumbs[n] if n < len(thumbs) else None
    return None if rel is None else urls.example_file(slug, n, PurePosixPath(rel).suffix.lower())


class FeatureWriter:
    """Renders the page and the record of every unit of one layer."""

    def __init__(self, info: SiteInfo, view: LayerView, examples: Examples | None):
        self.info = info
        self.view = view
        self.ids = examples.ids if examples is not None else []
        self.labels = examples.labels if examples is not None else []
        self.thumbs = examples.thumbs if examples is not None else []
        spec = view.spec
        self.layer = spec.index
        self.module = spec.module + (f" (call {spec.call})" if spec.call else "")

    def _image(self, n: int, here: str) -> str | None:
        """Relative URL of example ``n``'s thumbnail from the page at ``here``."""
        path = example_path(self.info.slug, self.thumbs, n)
        return None if path is None else urls.relative(path, here)

    def _example(self, n: int) -> tuple[str, int | None, str | None]:
        """``(id, label, class name)`` of example number ``n``."""
        ex_id = self.ids[n] if n < len(self.ids) else str(n)
        label = self.labels[n] if n < len(self.labels) else None
        names = self.info.class_names or []
        name = names[label] if label is not None and 0 <= label < len(names) else None
        return ex_id, label, name

    def permalink(self, unit: int) -> str:
        path = urls.feature_dir(self.info.slug, self.layer, unit) + "/"
        return (self.info.site_url.rstrip("/") + "/" + path) if self.info.site_url else path

    def markdown(self, unit: int) -> str:
        """The feature page source: front matter + heatmap script."""
        info, view, layer = self.info, self.view, self.layer
        here = urls.feature_dir(info.slug, layer, unit)
        idx = view.index
        slots = _top_slots(view, unit)
        names = info.class_names or []
        top = []
        for s in slots:
            n = int(idx.top_ids[unit, s])
            ex_id, _, name = self._example(n)
            top.append([n, ex_id, num(float(idx.top_scores[unit, s])), self._image(n, here), name])
        feature: dict[str, Any] = {
            "model": info.model, "slug": info.slug, "weights": info.weights,
            "layer": layer, "unit": unit, "module": self.module, "stage": view.spec.stage,
            "grid": f"{view.spec.grid[0]}×{view.spec.grid[1]}", "units": view.spec.units,
            "prefix": view.spec.prefix_tokens,
            "vis": urls.VISUALIZATION if unit in view.vis else None,
            "activation": num(view.activation(unit)) if unit in view.vis else None,
            "recipe": _recipe_summary(view.recipes.get(unit)),
            "recipe_json": json.dumps(view.recipes.get(unit) or {}, sort_keys=True),
            "dataset": info.dataset, "atlas_version": info.atlas_version,
        }
        meta: dict[str, Any] = {
            "template": "feature.html",
            "title": f"{info.slug} · layer {layer} · unit {unit}",
            "model": info.slug,
            "search": {"exclude": True},
            "feature": feature,
            "links": neighbours(info, layer, unit),
            "top": top,
        }
        maps_json = ""
        if idx is not None:
            feature["mean"] = num(float(idx.mean[unit]))
            feature["max"] = num(float(idx.max[unit]))
            feature["seen"] = info.images_seen
            meta["classes"] = [
                [names[c], num(float(m))]
                for c, m in zip(idx.top_classes[unit], idx.top_class_means[unit], strict=True)
                if 0 <= c < len(names)
            ]
            counts, edges = idx.hist_counts[unit], idx.hist_edges[unit]
            thr = float(idx.top_scores[unit, slots[-1]]) if slots else float("nan")
            meta["hist"] = {
                "path": histogram_path(counts), "lo": num(float(edges[0])),
                "hi": num(float(edges[-1])), "mean_x": histogram_x(float(idx.mean[unit]), edges),
                "top_x": histogram_x(thr, edges),
            }
            maps = idx.maps[unit, slots]
            lo, hi = heatmap_scale(maps)
            maps_json = script_json({"rows": int(maps.shape[1]) if maps.ndim == 3 else 0,
                                     "cols": int(maps.shape[2]) if maps.ndim == 3 else 0,
                                     "lo": _round(lo, 4), "hi": _round(hi, 4),
                                     "maps": encode_heatmaps(maps, lo, hi)})
        url = self.permalink(unit)
        meta["cite"] = {
            "permalink": url,
            "bibtex": bibtex(key=cite_key(info.slug, layer, unit), model=info.model,
                             weights=info.weights, layer=layer, module=view.spec.module,
                             unit=unit, atlas_version=info.atlas_version, url=url,
                             year=info.year),
        }
        body = (f'<script type="application/json" id="atlas-heatmaps">{maps_json}</script>\n'
                if maps_json else "")
        return front_matter(meta) + "\n" + body

    def record(self, unit: int) -> dict[str, Any]:
        """``feature.json``: the page's data in full precision (schema: data-format page)."""
        info, view, layer = self.info, self.view, self.layer
        here = urls.feature_dir(info.slug, layer, unit)
        idx = view.index
        names = info.class_names or []
        rec: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "model": info.model,
            "weights": info.weights,
            "layer": layer,
            "unit": unit,
            "module": view.spec.module,
            "call": view.spec.call,
            "stage": view.spec.stage,
            "grid": list(view.spec.grid),
            "prefix_tokens": view.spec.prefix_tokens,
            "recipe": view.recipes.get(unit),
            "visualization": urls.VISUALIZATION if unit in view.vis else None,
            "activation": view.activation(unit),
            "dataset": info.dataset,
            "images_seen": info.images_seen,
            "top": [],
            "histogram": None,
            "top_classes": [],
            "mean": None,
            "max": None,
            "atlas_version": info.atlas_version,
        }
        if idx is None:
            return rec
        slots = _top_slots(view, unit)
        maps = idx.maps[unit, slots]
        decimals = significant_decimals(maps)
        rounded = np.round(np.nan_to_num(maps.astype(np.float64)), decimals).tolist()
        for s, heat in zip(slots, rounded, strict=True):
            n = int(idx.top_ids[unit, s])
            ex_id, label, name = self._example(n)
            entry: dict[str, Any] = {
                "id": ex_id,
                "example": n,
                "score": _round(idx.top_scores[unit, s]),
                "image": self._image(n, here),
                "heatmap": heat,
            }
            if label is not None:
                entry["label"] = name if name is not None else str(label)
                entry["label_index"] = label
            rec["top"].append(entry)
        rec["histogram"] = {
            "counts": [int(c) for c in idx.hist_counts[unit]],
            "edges": [_round(e) for e in idx.hist_edges[unit]],
        }
        rec["top_classes"] = [
            {"label": names[c], "label_index": int(c), "mean": _round(m)}
            for c, m in zip(idx.top_classes[unit], idx.top_class_means[unit], strict=True)
            if 0 <= c < len(names)
        ]
        rec["mean"] = _round(idx.mean[unit])
        rec["max"] = _round(idx.max[unit])
        return rec
