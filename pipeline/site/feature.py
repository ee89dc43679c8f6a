"""One feature: its page's data and its ``feature.json``.

The page is rendered by the lean ``feature.html`` template (its own parts: the macros of
``partials/atlas-feature.html``, rendered for every page into its layer's shell: ``pages``)
from two sources:

- what the whole model shares (model, weights, dataset, version) and what a layer shares
  (module, stage, grid, recipes) go once into ``config.extra.atlas`` (``site_extra``,
  ``FeatureWriter.layer_extra``);
- what is the unit's own is the page's ``meta`` (``FeatureWriter.meta``: plain rows of
  strings, each top example, visualization, similar unit a list), which would be its YAML
  front matter were the page a Markdown source (``FeatureWriter.markdown``: the one mkdocs
  reads when the stage checks a page against mkdocs); the heatmaps are not in the page (its
  script reads them from ``feature.json``, where they are anyway).

Relations (when the atlas was related): the page's script draws, from ``feature.json``, at
most ``SIMILAR_SHOWN`` similar units per group (same layer, other layers, other models), linked
where the other unit has a page in this site, and at most ``QUANTILE_SHOWN`` examples per
quantile interval, their heatmaps on the top examples' colour scale; the page holds only the
sections' headings (the two lists were a third of its bytes at the demo's shape), and
``feature.json`` holds them all.

Every string reaches HTML through the template's ``|e``.
"""

from __future__ import annotations

import bisect
import json
import math
from collections import Counter
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import numpy as np

from pipeline.index.foreground import Foreground, atlas_foreground
from pipeline.index.results import Examples
from pipeline.site import fidelity, labels, recognisability, urls
from pipeline.site.assets import (
    clip_histogram,
    encode_maps,
    histogram_path,
    histogram_x,
)
from pipeline.site.cite import bibtex, cite_key, is_absolute
from pipeline.site.data import AtlasView, LayerView, clean_seed
from pipeline.site.markup import front_matter, num
from pipeline.store import AtlasStore


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
    # units that have a page, per layer with pages (sorted; data.compact_units: a range where
    # consecutive)
    units_by_layer: dict[int, Sequence[int]]
    year: int
    site_url: str | None = None  # absolute base URL of the pages (--site-url), else None
    labeler: str | None = None  # what made the labels (None: the atlas has none)
    labeler_line: str = ""  # labeler, concept set and probe images, in words
    # models whose pages are in this site: {model name: slug} (similar units link to them)
    site_models: dict[str, str] = field(default_factory=dict)
    version: str | None = None  # the published version (publish), None for a plain build
    # of those built with this one, the units with a page, per layer ({model name:
    # units_by_layer}); a unit of one missing here links without a check
    site_pages: dict[str, dict[int, Sequence[int]]] = field(default_factory=dict)
    # the model's layers by index (their URLs: urls.layer_path), and those of the models built
    # with this one ({model name: {index: layer}})
    layers: dict[int, urls.Layer] = field(default_factory=dict)
    site_layers: dict[str, dict[int, urls.Layer]] = field(default_factory=dict)
    # the atlas directories of the models built with this one ({model name: path}): their
    # units' visualizations are shown beside the similar units
    site_roots: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, atlas: AtlasView, units_by_layer: dict[int, Sequence[int]], year: int,
           site_url: str | None, version: str | None = None) -> SiteInfo:
        ex = atlas.examples
        return cls(atlas.model, atlas.slug, atlas.weights, atlas.atlas_version, atlas.dataset,
                   None if ex is None else ex.images_seen, None if ex is None else ex.class_names,
                   units_by_layer, year, site_url, atlas.labeler,
                   labels.labeler_line(atlas.label_info), {atlas.model: atlas.slug}, version,
                   layers={layer.index: layer for layer in atlas.spec.layers})

    def layer(self, index: int, model: str | None = None) -> urls.Layer | int:
        """Layer ``index`` of this model, or of ``model`` (another one of the site), as the
        URLs need it (``urls.layer_path``); the bare index where that model's layers are not
        known here (a model given only by name and slug): an FFN layer's URL."""
        layers = self.layers if model is None else self.site_layers.get(model, {})
        return layers.get(index, index)

    def feature_dir(self, index: int, unit: int, model: str | None = None) -> str:
        """Site path of the feature page of ``unit`` of layer ``index`` (``urls.feature_dir``)
        of this model, or of ``model`` (another one of the site, by name).

        >>> from pipeline.models.spec import FFNLayer
        >>> key = FFNLayer(2, "blocks.0.attn.qkv", 0, 0, 1, (4, 4), 8, "key", 8, 0)
        >>> info = SiteInfo("m", "m-slug", "hub", "1", "d", None, None, {}, 2024, layers={2: key},
        ...                 site_models={"m": "m-slug", "o": "o-slug"})
        >>> info.feature_dir(2, 5), info.feature_dir(0, 5), info.feature_dir(2, 5, "o")
        ('m-slug/key/0/5', 'm-slug/0/5', 'o-slug/2/5')
        """
        slug = self.slug if model is None else self.site_models[model]
        return urls.feature_dir(slug, self.layer(index, model), unit)


def site_extra(info: SiteInfo) -> dict[str, Any]:
    """The model-wide part of ``config.extra.atlas`` (layers are added per layer);
    ``labels``: the labeler in words, or None when the atlas has no labels."""
    return {"model": info.model, "slug": info.slug, "weights": info.weights,
            "dataset": info.dataset, "images_seen": info.images_seen,
            "atlas_version": info.atlas_version, "layers": {},
            "labels": info.labeler_line or None}


SIMILAR_SHOWN = 8  # similar units shown per group on a page (feature.json has all)
# the primary recipe's fields that feature.json gives at its top level, not again in its
# entry of "recipes" (format 11; assets.expand_record puts them back)
PRIMARY_FIELDS = ("recipe", "visualization", "activation", "fidelity", "attribution",
                  "diversity")
# feature.json's columns of dataset examples (and their "maps"), of similar units
EXAMPLE_COLUMNS = ("example", "id", "score", "image", "label_index")
SIMILAR_COLUMNS = ("model", "layer", "unit", "score", "slug")


def diversity_record(result: dict[str, Any], visualization: str) -> dict[str, Any] | None:
    """``feature.json``'s ``diversity`` of a visualization made with N > 1 images per unit
    (``--diversity N``): its further images' URLs beside the page (``urls.diversity_file`` of
    the recipe's ``visualization`` file), their activations, and the mean pairwise cosine
    similarity of the N images' Gram matrices; None for one image per unit.

    >>> diversity_record({"diversity": {"images": ["u00001.d1.png"], "activations": [1.25],
    ...                   "similarity": 0.5}}, "visualization.avif")
    {'images': ['visualization.d1.avif'], 'activations': [1.25], 'similarity': 0.5}
    >>> diversity_record({"activation": 2.0}, "visualization.avif") is None
    True
    """
    found = result.get("diversity")
    if not found or not found.get("images"):
        return None
    out = {"images": [urls.diversity_file(visualization, k)
                      for k in range(1, len(found["images"]) + 1)],
           "activations": [_round(a) for a in found.get("activations", [])],
           "similarity": _round(found["similarity"]) if "similarity" in found else None}
    if found.get("recognisability"):  # format 13: judged like image 0, on its trials
        out["recognisability"] = [recognisability.further(r)
                                  for r in found["recognisability"]]
    return out


def columns(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, list]:
    """``rows`` of one shape as ``{key: [value of each row]}`` (None where a row lacks it):
    how ``feature.json`` writes lists of records, so no key is repeated.

    >>> columns([{"a": 1, "b": 2}, {"a": 3}], ("a", "b"))
    {'a': [1, 3], 'b': [2, None]}
    """
    return {k: [r.get(k) for r in rows] for k in keys}
QUANTILE_SHOWN = 3  # examples shown per quantile interval (the index keeps 4 by default)


def histogram_record(counts: np.ndarray, edges: np.ndarray) -> dict[str, list]:
    """``feature.json``'s ``histogram``: ``counts``, and the bins' ``range`` ``[lo, hi]``
    (the index's bins are of equal width: ``pipeline.index.histogram``, so the edges are
    ``lo + (hi - lo) * i / len(counts)``); ``edges`` as well, should they not be.

    >>> histogram_record(np.array([3, 0, 1]), np.array([-0.5, 0.0, 0.5, 1.0], np.float32))
    {'counts': [3, 0, 1], 'range': [-0.5, 1.0]}
    >>> histogram_record(np.array([3, 1]), np.array([0.0, 1.0, 3.0]))["edges"]
    [0.0, 1.0, 3.0]
    """
    edges = np.asarray(edges, np.float64)
    out: dict[str, list] = {"counts": [int(c) for c in counts],
                            "range": [_round(edges[0]), _round(edges[-1])]}
    width = np.diff(edges)
    if width.size and not np.allclose(width, width.mean(), rtol=1e-4, atol=0):
        out["edges"] = [_round(e) for e in edges]
    return out


def word_query(concept: str) -> str:
    """The query string of the word search page that lists the units ``concept`` labels."""
    return "?word=" + quote(concept, safe="")


def _nearest(units: list[int], unit: int) -> int:
    i = bisect.bisect_left(units, unit)
    if i == len(units):
        return units[-1]
    if i == 0 or units[i] == unit:
        return units[i]
    return units[i] if units[i] - unit < unit - units[i - 1] else units[i - 1]


def neighbours(info: SiteInfo, layer: int, unit: int) -> list[str | None]:
    """Relative URLs from the feature page: previous/next unit, previous/next layer (the
    nearest unit with a page there), in the order of the layers' numbers.

    >>> from pipeline.models.spec import FFNLayer
    >>> key = FFNLayer(2, "blocks.0.attn.qkv", 0, 0, 1, (4, 4), 8, "key", 8, 0)
    >>> info = SiteInfo("m", "m", "hub", "1", "d", None, None, {1: [0, 4], 2: [3, 5]}, 2024,
    ...                 layers={2: key})
    >>> neighbours(info, 1, 4)
    ['../0/', None, None, '../../key/0/3/']
    >>> neighbours(info, 2, 3)
    [None, '../5/', '../../../1/4/', None]
    """
    units = info.units_by_layer[layer]
    i = bisect.bisect_left(units, unit)
    layers = sorted(info.units_by_layer)
    j = layers.index(layer)
    here = info.feature_dir(layer, unit)

    def link(index: int, other: int) -> str:
        return urls.relative(info.feature_dir(index, other) + "/", here)

    def other_layer(k: int) -> str | None:
        if not 0 <= k < len(layers):
            return None
        return link(layers[k], _nearest(info.units_by_layer[layers[k]], unit))

    return [
        link(layer, units[i - 1]) if i > 0 else None,
        link(layer, units[i + 1]) if i + 1 < len(units) else None,
        other_layer(j - 1),
        other_layer(j + 1),
    ]


def _round(x: float, digits: int = 6) -> float | None:
    x = float(x)
    return float(f"{x:.{digits}g}") if math.isfinite(x) else None


def _rounded(values: list[float]) -> list[float | None]:
    """``_round`` of each of ``values`` (Python floats), at 6 significant digits."""
    return [float(f"{x:.6g}") if math.isfinite(x) else None for x in values]


def _top_slots(view: LayerView, unit: int) -> list[int]:
    if view.index is None:
        return []
    return [i for i, n in enumerate(view.index.top_ids[unit]) if n >= 0]


def foreground_words(fg: Foreground | None) -> list[str]:
    """The page's sentences on where the unit fires: foreground share against area (chance),
    and the masking experiment; empty without masks.

    >>> for line in foreground_words(Foreground(0.62, 0.35, 8, 0.9, 0.4)):
    ...     print(line)  # doctest: +NORMALIZE_WHITESPACE
    On its 8 top examples with an object mask, 62% of this unit's positive activation falls on
    the object, which covers 35% of the image: it fires on the object more than chance.
    With the background replaced by the image's mean colour it keeps 0.90 of its activation on
    them; with the object replaced, 0.40: it depends on the object more than on the background.
    """
    if fg is None:
        return []
    out = []
    if fg.share is not None and fg.area is not None:
        gap = fg.share - fg.area
        how = ("more than chance" if gap > 0.02 else "less than chance" if gap < -0.02
               else "about as much as chance")
        n = fg.examples
        out.append(f"On its {n} top example{'s' if n != 1 else ''} with an object mask, "
                   f"{fg.share:.0%} of this unit's positive activation falls on the object, "
                   f"which covers {fg.area:.0%} of the image: it fires on the object {how}.")
    bg, obj = fg.background_masked, fg.foreground_masked
    if bg is not None and obj is not None:
        lean = ("it depends on the object more than on the background" if obj < bg - 0.02
                else "it depends on the background more than on the object" if bg < obj - 0.02
                else "it depends on both about alike")
        out.append(f"With the background replaced by the image's mean colour it keeps "
                   f"{bg:.2f} of its activation on them; with the object replaced, {obj:.2f}: "
                   f"{lean}.")
    return out


def _recipe_summary(recipe: dict | None, name: str = "custom") -> str:
    if not recipe:
        return name if name != "custom" else "–"
    parts = [str(recipe.get("name", name))]
    if "steps" in recipe:
        steps = recipe["steps"]
        parts.append(f"{steps} step{'s' if steps != 1 else ''}")
    if "lr" in recipe:
        parts.append(f"lr {recipe['lr']}")
    return ", ".join(parts)


def example_path(slug: str, thumbs: list[str | None], n: int) -> str | None:
    """Site path of example ``n``'s thumbnail (named by number: ids may hold any character;
    AVIF, whatever the atlas's file: ``assets.write_display``)."""
    rel = thumbs[n] if n < len(thumbs) else None
    return None if rel is None else urls.example_file(slug, n)


class FeatureWriter:
    """Renders the page and the record of every unit of one layer."""

    def __init__(self, info: SiteInfo, view: LayerView, examples: Examples | None,
                 thumbnails: Callable[[int], Mapping[int, str]] | None = None):
        """``thumbnails(layer)``: ``{unit: visualization file}`` of any layer of the model
        (``AtlasView.thumbnails``), for the similar units' thumbnails; None: placeholders
        outside ``view``'s layer."""
        self.info = info
        self.view = view
        self.thumbnails = thumbnails
        self._site_views: dict[str, AtlasView] = {}  # the models of info.site_roots, as read
        self._page_sets: dict[tuple[str | None, int], Container[int]] = {}
        self._images: dict[int, tuple[str | None, bool]] = {}  # _thumbnail's
        self._own_thumbs: dict[int, str | None] = {}  # the layer's units' (_other_thumb)
        self._examples_seen: dict[int, tuple[str, int | None, str | None]] = {}
        self.ids = examples.ids if examples is not None else []
        self.labels = examples.labels if examples is not None else []
        self.thumbs = examples.thumbs if examples is not None else []
        self.layer = view.spec.index
        self.up = urls.up_to_model(info.slug, view.spec)  # from a page of the layer: ../../
        self.foreground = atlas_foreground(view.store, view.spec, view.index, self.ids)
        # one pass over the layer's results (none kept): the distinct (recipe name, recipe
        # dict) pairs as first met in unit order (a recipe's chunks may differ), and per
        # recipe how many units hold each z-rank (ties share the best rank)
        self._keys: dict[int, tuple[dict, str]] = {}  # id(recipe dict) -> (it, its JSON)
        first: dict[tuple[str, str], tuple[int, dict]] = {}
        self.ties: dict[str, Counter] = {}
        for name, results in view.vis.items():
            ranks = self.ties.setdefault(name, Counter())
            for unit, result in results.items():
                key = self._recipe_key(name, result)
                if key not in first or unit < first[key][0]:
                    first[key] = (unit, result.get("recipe") or {})
                rank = (fidelity.clean(result.get("fidelity")) or {}).get("z_rank")
                if rank is not None:
                    ranks[rank] += 1
        self.recipes: list[tuple[str, dict]] = []
        self._recipe_number: dict[tuple[str, str], int] = {}
        for name in view.vis:
            for key in sorted((k for k in first if k[0] == name), key=lambda k: first[k][0]):
                self._recipe_number[key] = len(self.recipes)
                self.recipes.append((name, first[key][1]))

    def _recipe_key(self, name: str, result: dict[str, Any]) -> tuple[str, str]:
        """What tells a result's recipe from another's: its name and its chunk's recipe dict
        as JSON (made once per dict: a chunk's results share theirs)."""
        recipe = result.get("recipe") or {}
        held = self._keys.get(id(recipe))
        if held is None or held[0] is not recipe:
            if len(self._keys) > 16:
                self._keys.clear()
            held = self._keys[id(recipe)] = (recipe, json.dumps(recipe, sort_keys=True))
        return name, held[1]

    def tied(self, recipe: str, fid: dict[str, Any] | None) -> int:
        """How many units of the layer share ``fid``'s z-rank under ``recipe`` (1: none)."""
        rank = fid.get("z_rank") if fid else None
        return self.ties.get(recipe, {}).get(rank, 1) if rank is not None else 1

    def layer_extra(self) -> dict[str, Any]:
        """This layer's part of ``config.extra.atlas`` (what all its feature pages share)."""
        s = self.view.spec
        return {
            "up": self.up,  # the model's folder, relative to a feature page of the layer
            # the layer and its units by name (urls.layer_name; the template fills "{unit}")
            "name": urls.layer_name(s), "unit_name": urls.layer_name(s, "{unit}"),
            "noun": "unit" if s.kind == urls.FFN else "channel",
            "module": s.module + (f" (call {s.call})" if s.call else ""),
            "stage": s.stage, "grid": f"{s.grid[0]}×{s.grid[1]}", "units": s.units,
            "prefix": s.prefix_tokens,
            # a recipe's summary and name (its fields: feature.json, which the page's script
            # reads when the reader opens them)
            "recipes": [[_recipe_summary(r, name), name] for name, r in self.recipes],
        }

    def _image(self, n: int) -> str | None:
        """Relative URL of example ``n``'s thumbnail from a feature page (once per example:
        the layer's pages show many alike)."""
        return self._thumbnail(n)[0]

    def _by_number(self, n: int) -> bool:
        """Whether example ``n``'s thumbnail URL is ``_image_template``'s."""
        return self._thumbnail(n)[1]

    def _thumbnail(self, n: int) -> tuple[str | None, bool]:
        """``_image`` and ``_by_number`` of example ``n``, made once."""
        if n not in self._images:
            path = example_path(self.info.slug, self.thumbs, n)
            url = None if path is None else \
                self.up + path[len(urls.model_dir(self.info.slug)) + 1:]
            self._images[n] = url, url == self._image_template.format(example=n)
        return self._images[n]

    def _example(self, n: int) -> tuple[str, int | None, str | None]:
        """``(id, label, class name)`` of example number ``n``."""
        if n not in self._examples_seen:
            ex_id = self.ids[n] if n < len(self.ids) else str(n)
            label = self.labels[n] if n < len(self.labels) else None
            names = self.info.class_names or []
            name = names[label] if label is not None and 0 <= label < len(names) else None
            self._examples_seen[n] = ex_id, label, name
        return self._examples_seen[n]

    def seed_words(self, result: dict[str, Any]) -> str:
        """An accentuation's activation against its seed's: ``"Raises the unit from 2.1 (its
        seed, example val/3.JPEG) to 5.3."``; empty for a result without a seed."""
        seed = clean_seed(result.get("seed"))
        if seed is None:
            return ""
        return (f"Raises the unit from {num(seed['activation'])} (its seed, example "
                f"{seed['example']}) to {num(float(result['activation']))}.")

    def _visualizations(self, unit: int) -> list[list]:
        """One row per recipe that visualized ``unit``, primary first: recipe number (in
        ``layer_extra``'s ``recipes``), objective, image file, attribution file or "", "1" if
        trusted else "0", fidelity in words or "", recognisability in words or "", the seed's
        words (an accentuation) or "", then the cautions."""
        out = []
        for name, result in self.view.results(unit):
            vis_file, attr_file = self.view.files[name]
            fid = fidelity.clean(result.get("fidelity"))
            rec = fid.get("recognisability") if fid else None
            number = self._recipe_number[self._recipe_key(name, result)]
            out.append([number, num(float(result["activation"])),
                        vis_file, attr_file if result.get("attribution") else "",
                        "1" if fidelity.trusted(fid) else "0",
                        fidelity.line(fid, self.info.images_seen, self.tied(name, fid)),
                        recognisability.sentences(rec), self.seed_words(result),
                        *fidelity.cautions(fid)])
        return out

    def _diversity(self, unit: int) -> list[list]:
        """Per row of ``_visualizations``: with several images per unit (``--diversity``),
        the mean pairwise similarity in words and each image's (file, activation, 2-AFC as
        "17 in 20" or ""), image 0 (the row's own) first; else empty."""
        out: list[list] = []
        for name, result in self.view.results(unit):
            vis_file = self.view.files[name][0]
            more = diversity_record(result, vis_file)
            if more is None:
                out.append([])
                continue
            sim = more["similarity"]
            fid = fidelity.clean(result.get("fidelity")) or {}
            judged = [fid.get("recognisability")] + (
                more.get("recognisability") or [None] * len(more["images"]))
            images = [[vis_file, num(float(result["activation"]))]] + [
                [f, num(float(a))] for f, a in zip(more["images"], more["activations"],
                                                    strict=True)]
            for row, rec in zip(images, judged, strict=True):  # "17 in 20", or ""
                row.append(recognisability.count(rec))
            out.append(["" if sim is None else num(sim), images])
        return out

    def _other_thumb(self, layer: int, unit: int) -> str | None:
        if layer == self.layer:  # once per unit of the layer: each is many units' neighbour
            if unit not in self._own_thumbs:
                self._own_thumbs[unit] = self.view.thumbnail(unit)
            return self._own_thumbs[unit]
        return self.thumbnails(layer).get(unit) if self.thumbnails is not None else None

    def _similar_columns(self, unit: int) -> dict[str, list]:
        """``feature.json``'s ``similar``: columns of ``SIMILAR_COLUMNS``, ``model`` null
        for a unit of the feature's own model (most are: its name is not repeated), ``slug``
        only when some unit has one (another model's with pages in this site)."""
        models, layers, units, scores = self.view.similar_columns(unit)
        own, site_models = self.info.model, self.info.site_models
        cols: dict[str, list] = {
            "model": [None if m == own else m for m in models], "layer": layers,
            "unit": units, "score": scores,
            "slug": [site_models[m] if m != own and self._in_site(m, layer, u) else None
                     for m, layer, u in zip(models, layers, units, strict=True)]}
        if not any(m is not None for m in cols["model"]):
            del cols["model"]  # every unit is of the feature's own model (format 15)
        if not any(s is not None for s in cols["slug"]):
            del cols["slug"]
        numbered: dict[str, int] = {}  # thumbnail file -> its number in "thumbs"
        thumb = []
        for m, layer, u in zip(models, layers, units, strict=True):
            found = self._similar_thumb(m, layer, u)
            thumb.append(None if found is None else numbered.setdefault(found, len(numbered)))
        cols["thumb"] = thumb
        cols["thumbs"] = list(numbered)
        return cols

    def _site_thumbnails(self, model: str, layer: int) -> Mapping[int, str]:
        """``{unit: visualization file}`` of ``layer`` of ``model``, another model built with
        this one (``SiteInfo.site_roots``, read once per model); empty for any other."""
        root = self.info.site_roots.get(model)
        if root is None:
            return {}
        if model not in self._site_views:
            self._site_views[model] = AtlasView(AtlasStore(root))
        return self._site_views[model].thumbnails(layer)

    def _similar_thumb(self, model: str, layer: int, unit: int) -> str | None:
        """The visualization file beside the page of a similar unit, which the page's script
        shows (``feature.json``'s ``thumbs``, format 15); None for a unit without one or
        without a page in this site. Another model's unit has one when that model is built
        with this one (``SiteInfo.site_roots``)."""
        if model == self.info.model:
            return self._other_thumb(layer, unit) if unit in self._pages(layer) else None
        if model in self.info.site_pages and unit in self._pages(layer, model):
            return self._site_thumbnails(model, layer).get(unit)
        return None

    def _pages(self, layer: int, model: str | None = None) -> Container[int]:
        """Units of ``layer`` with a page, of this model or of ``model`` (another one built
        with it): a ``range`` as ``SiteInfo`` holds it, else a set of its units."""
        key = (model, layer)
        if key not in self._page_sets:
            by_layer = self.info.units_by_layer if model is None else self.info.site_pages[model]
            units = by_layer.get(layer, ())
            self._page_sets[key] = units if isinstance(units, range) else set(units)
        return self._page_sets[key]

    def _in_site(self, model: str, layer: int, unit: int) -> bool:
        """Whether another model's unit has a page in this site (as far as is known)."""
        if model not in self.info.site_models:
            return False
        return model not in self.info.site_pages or unit in self._pages(layer, model)

    def permalink(self, unit: int) -> str:
        """The page's citable URL: absolute when the site's URL is known (with the version in
        it when published), else its path from the site root (``<version>/…`` when
        published)."""
        path = self.info.feature_dir(self.layer, unit) + "/"
        if self.info.site_url:
            return self.info.site_url.rstrip("/") + "/" + path
        return f"{self.info.version}/{path}" if self.info.version else path

    def markdown(self, unit: int) -> str:
        """The feature page as a Markdown source for mkdocs: ``meta`` as front matter and one
        sentence (the site stage renders the page from ``meta`` itself: ``pages``)."""
        if self.view.spec.kind == urls.FFN:
            named = f"Unit {unit} of FFN layer {self.layer}"
        else:
            named = urls.layer_name(self.view.spec, unit)
            named = named[0].upper() + named[1:]
        return front_matter(self.meta(unit)) + f"\n{named} of the model; data in feature.json.\n"

    def meta(self, unit: int) -> dict[str, Any]:
        """The page's data, as ``feature.html`` reads it (``page.meta``): what is the unit's
        own; what its layer and model share is in ``config.extra.atlas``."""
        info, view, layer = self.info, self.view, self.layer
        idx = view.index
        meta: dict[str, Any] = {
            "template": "feature.html",
            "title": f"{info.slug} · {urls.layer_name(view.spec, unit)}",
            "model": info.slug,
            "search": {"exclude": True},
            "layer": layer,
            "unit": unit,
            "vis": self._visualizations(unit),
            "links": neighbours(info, layer, unit),
        }
        div = self._diversity(unit)
        if any(div):
            meta["div"] = div
        # the similar units are drawn by the page's script from feature.json, which holds
        # them anyway (format 15): how many, and how many it shows per group
        similar = view.similar_count(unit)
        if similar:
            meta["similar"] = [similar, SIMILAR_SHOWN]
        concepts = view.concepts(unit)
        if concepts:  # score, query string of the word page, concept
            meta["words"] = [[num(c["score"]), word_query(c["concept"]), c["concept"]]
                             for c in concepts]
        if idx is not None:
            slots = _top_slots(view, unit)
            names = info.class_names or []
            top = []
            for s in slots:
                n = int(idx.top_ids[unit, s])
                ex_id, _, name = self._example(n)
                top.append([num(float(idx.top_scores[unit, s])), self._image(n) or "",
                            name or "", ex_id])
            meta["top"] = top
            meta["classes"] = [
                [num(float(m)), names[c]]
                for c, m in zip(idx.top_classes[unit], idx.top_class_means[unit], strict=True)
                if 0 <= c < len(names)
            ]
            thr = float(idx.top_scores[unit, slots[-1]]) if slots else float("nan")
            meta["stats"] = [num(float(idx.mean[unit])), num(float(idx.max[unit]))]
            meta["hist"] = self._histogram(unit, thr)
            # neither the quantile examples nor any heatmap is in the page: its script draws
            # them from feature.json
            intervals = len(view.quantiles(unit))
            if intervals:
                meta["quant"] = [intervals, QUANTILE_SHOWN]
        if self.foreground is not None and foreground_words(self.foreground[unit]):
            meta["fg"] = foreground_words(self.foreground[unit])
        url = self.permalink(unit)
        meta["cite"] = [url, bibtex(key=cite_key(info.slug, view.spec, unit), model=info.model,
                                    weights=info.weights, layer=view.spec,
                                    module=view.spec.module,
                                    unit=unit, atlas_version=info.atlas_version, url=url,
                                    year=info.year), is_absolute(url)]
        return meta

    def _histogram(self, unit: int, threshold: float) -> list:
        """The page's histogram: path, axis ends, x of the mean, of the top-k cut and of the
        primary visualization's activation (or None), that activation, and, when it lies
        beyond the axis, the axis end it is drawn at; last, the width of a bin (the bars' x scale)
        (``assets.histogram_path``). The axis spans the bins that hold images
        (``assets.clip_histogram``), not the empty range up to the visualization."""
        idx = self.view.index
        counts, edges = clip_histogram(idx.hist_counts[unit], idx.hist_edges[unit])
        results = self.view.results(unit)
        act = float(results[0][1]["activation"]) if results else float("nan")
        vis_x = histogram_x(act, edges)
        beyond = ""
        if vis_x is not None and not float(edges[0]) <= act <= float(edges[-1]):
            end = float(edges[-1]) if act > edges[-1] else float(edges[0])
            beyond = ("› " if act > end else "‹ ") + num(end)
        path, scale = histogram_path(counts)
        return [path, num(float(edges[0])), num(float(edges[-1])),
                histogram_x(float(idx.mean[unit]), edges), histogram_x(threshold, edges),
                vis_x, num(act) if vis_x is not None else "", beyond, scale]

    def _examples(self, numbers: list[int], scores: list[float],
                  maps: np.ndarray) -> dict[str, Any]:
        """Dataset examples (their ``numbers`` and ``scores``) of ``feature.json`` (``top``
        and ``quantiles`` alike) as columns, their patch maps ``(n, rows, cols)`` as one
        ``encode_maps`` object. When every example has its thumbnail (as the index makes
        them), the ``image`` column gives way to ``images``, their URL with ``{example}`` for
        the number (``../../examples/e{example}.avif``): the same 26 characters a row less."""
        seen = [self._example(n) for n in numbers]
        cols: dict[str, Any] = {
            "example": numbers, "id": [e[0] for e in seen], "score": _rounded(scores),
            "image": [self._image(n) for n in numbers],
            "label_index": [e[1] for e in seen]}  # its name: the record's class_names
        if maps.size == 0:
            maps = np.zeros((len(numbers), *self.view.spec.grid), np.float32)
        if all(map(self._by_number, numbers)):
            del cols["image"]  # every example has its thumbnail, named by its number
            cols["images"] = self._image_template
        return {**cols, "maps": encode_maps(maps)}

    @property
    def _image_template(self) -> str:
        """The URL of an example's thumbnail from a page of the layer, ``{example}`` for its
        number (``../../examples/e{example}.avif``)."""
        return self.up + urls.example_file(self.info.slug, "{example}")[
            len(urls.model_dir(self.info.slug)) + 1:]  # type: ignore[arg-type]

    def record(self, unit: int) -> dict[str, Any]:
        """``feature.json``: the page's data (schema: the Data format page). Figures keep the
        precision they carry (6 significant digits); lists of records are written as columns
        (``columns``); patch maps are quantized to a byte with their scale
        (``assets.encode_maps``; ``assets.decode_record`` reads them back)."""
        info, view, layer = self.info, self.view, self.layer
        idx = view.index
        names = info.class_names or []
        recipes = []
        for name, result in view.results(unit):
            vis_file, attr_file = view.files[name]
            item = {"name": name, "recipe": result.get("recipe") or None,
                    "visualization": vis_file, "activation": _round(result["activation"]),
                    "fidelity": fidelity.clean(result.get("fidelity"))}
            if result.get("attribution"):
                item["attribution"] = attr_file
            more = diversity_record(result, vis_file)
            if more is not None:
                item["diversity"] = more
            seed = clean_seed(result.get("seed"))
            if seed is not None:
                item["seed"] = seed
            recipes.append(item)
        primary = recipes[0] if recipes and recipes[0]["name"] == view.primary else None
        rec: dict[str, Any] = {
            "format_version": urls.SITE_FORMAT_VERSION,
            "model": info.model,
            "weights": info.weights,
            "layer": layer,
            "unit": unit,
            "module": view.spec.module,
            "call": view.spec.call,
            "stage": view.spec.stage,
            "grid": list(view.spec.grid),
            "prefix_tokens": view.spec.prefix_tokens,
            "kind": view.spec.kind,
            **({} if self.foreground is None else {
                "foreground": self.foreground[unit].to_dict()}),
            **({} if view.spec.kind == "ffn" else {
                "depth": view.spec.level, "channel": view.spec.offset + unit}),
            "recipe": primary["recipe"] if primary else None,
            "visualization": primary["visualization"] if primary else None,
            "activation": primary["activation"] if primary else None,
        }
        if primary and primary["fidelity"] is not None:
            rec["fidelity"] = primary["fidelity"]
        if primary and "attribution" in primary:
            rec["attribution"] = primary["attribution"]
        if primary and "diversity" in primary:
            rec["diversity"] = primary["diversity"]
        if primary is not None:  # the record holds its fields already (format 11)
            recipes[0] = {k: v for k, v in primary.items() if k not in PRIMARY_FIELDS}
        rec.update({
            "recipes": recipes,
            "dataset": info.dataset,
            "images_seen": info.images_seen,
            "top": None,  # (the keys' order is the file's: filled in below)
            "histogram": None,
            "top_classes": columns([], ("label_index", "mean")),
            "class_names": {},
            "mean": None,
            "max": None,
            "labels": columns(view.concepts(unit), ("concept", "score")),
            "labeler": info.labeler,
            "similar": self._similar_columns(unit),
            "quantiles": None,
            "atlas_version": info.atlas_version,
            "site_version": info.version,
            "permalink": self.permalink(unit),
        })
        if idx is None:
            rec["top"] = self._examples([], [], np.zeros(0))
            rec["quantiles"] = {"intervals": [], "examples": self._examples([], [], np.zeros(0))}
            return rec
        slots = _top_slots(view, unit)
        rec["top"] = self._examples(idx.top_ids[unit, slots].tolist(),
                                    idx.top_scores[unit, slots].tolist(), idx.maps[unit, slots])
        intervals, numbers, scores, which, qmaps = [], [], [], [], []
        for j, q in enumerate(view.quantiles(unit)):
            intervals.append([_round(q["interval"][0]), _round(q["interval"][1])])
            numbers += [n for n, _ in q["examples"]]
            scores += [score for _, score in q["examples"]]
            which += [j] * len(q["examples"])
            qmaps.append(idx.quantile_maps[unit, j, q["slots"]])
        examples = self._examples(numbers, scores,
                                  np.concatenate(qmaps) if qmaps else np.zeros(0))
        rec["quantiles"] = {"intervals": intervals, "examples": {"interval": which, **examples}}
        rec["histogram"] = histogram_record(idx.hist_counts[unit], idx.hist_edges[unit])
        rec["top_classes"] = columns([
            {"label_index": int(c), "mean": _round(m)}
            for c, m in zip(idx.top_classes[unit], idx.top_class_means[unit], strict=True)
            if 0 <= c < len(names)
        ], ("label_index", "mean"))
        # each class named once (format 15), not in every example's row
        shown = {*rec["top"]["label_index"], *rec["quantiles"]["examples"]["label_index"],
                 *rec["top_classes"]["label_index"]} - {None}
        rec["class_names"] = {str(c): names[c] for c in sorted(shown) if 0 <= c < len(names)}
        rec["mean"] = _round(idx.mean[unit])
        rec["max"] = _round(idx.max[unit])
        return rec
