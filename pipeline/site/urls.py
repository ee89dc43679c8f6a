"""Site layout: where each page and file lives, and relative links between them.

``<slug>/`` model page, ``<slug>/<layer>/`` layer page, ``<slug>/<layer>/<unit>/`` feature page
of an FFN layer; the key, query or value channels of a block have theirs at
``<slug>/<kind>/<depth>/`` and ``<slug>/<kind>/<depth>/<unit>/`` (``layer_path``: stable
whichever kinds a build runs). Beside a feature page: ``feature.json``, ``visualization.avif``
(the primary recipe's) and ``attribution.avif`` (its attribution map, if any), and
``visualization-<recipe>.avif`` / ``attribution-<recipe>.avif`` for every other recipe (the
site's images are AVIF: ``assets.write_display``);
``<slug>/examples/e<n><ext>`` dataset thumbnails, ``<slug>/classes.json`` the whole class index
(for scripts), ``<slug>/classes/`` the header search's class index (``index.json``: names,
counts, each class's best units; shards ``c<n>.json``: every class's units), ``<slug>/words/``
the search-by-word page with the word index's shards ``<slug>/words/w<n>.json`` beside it,
``map.json`` beside a layer page the layer map (when the atlas was related), ``units.json``
beside it the layer grid's data (every unit with a page, in columns),
``<slug>/features.parquet`` the bulk export, ``models.json`` the jump index (which lists the
shards and each layer's page), ``compare/`` the cross-model view (two models or more),
``sitemap.xml`` (when the site's URL is known). A published version is such a site in
``SITE/<version>/`` (``pipeline.publish``).
Every link the pages contain is relative, so the site works from any sub-path. Every path of
a layer or a feature is made here (``layer_dir``, ``feature_dir``, ``layer_map``,
``layer_units``, ``feature_source_pattern``); the browser reads each layer's from
``models.json``.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from typing import NamedTuple, Protocol

from pipeline.errors import AtlasError
from pipeline.ids import fingerprint, slug
from pipeline.store import DISPLAY_SUFFIX

# Top-level names the hand-written pages and theme use: a model slug must not shadow them.
RESERVED = {"assets", "search", "schema", "how-to-read", "method", "citing", "data-format",
            "hosting", "compare", "models.json", "404.html", "index.html", "sitemap.xml",
            "sitemap.xml.gz", "versions.json"}

# Version of the site's JSON files (feature.json, models.json, classes.json, word shards).
# 1: first release; 2: fidelity, attribution and per-recipe visualizations in feature.json;
# 3: labels and labeler in feature.json, the word index (models.json's "words", shards);
# 4: similar and quantiles in feature.json, the layer map (<slug>/<layer>/map.json);
# 5: permalink and site_version in feature.json, similar entries of other models carry their
#    page's slug, models.json lists every model of a multi-model site with its card;
# 6: fidelity.recognisability (2-AFC, transferability) of each recipe in feature.json, and the
#    accentuation's seed (recipes[].seed);
# 7: kind (ffn | query | key | value; with depth and channel for the attention kinds) and,
#    with masks, foreground {share, area, examples, background_masked, foreground_masked}.
# 8: key, query and value channels at URLs of their own, <slug>/<kind>/<depth>/<unit>/ (FFN
#    pages stay at <slug>/<layer>/<unit>/): feature.json's permalink and findings.json's sample
#    paths name them; models.json's layers gain kind, depth (other kinds) and path (the layer
#    page's site path, which the browser follows instead of assuming <slug>/<layer>/).
# 9: the layer page's grid is drawn from units.json beside it (every unit with a page, in
#    columns: thumbnails, top classes, concepts, fidelity, recognisability, foreground, the
#    tile switch's files); the page itself holds the controls and a plain list of links.
# 10: feature.json is compact: lists of records (top, quantile examples, similar units,
#    labels, top classes) are columns, patch maps are one {"encoding": "uint8-base64",
#    "shape", "scale", "offset", "data"} object per list (assets.encode_maps, as the page's
#    own), figures to 6 significant digits; images in the site are WebP.
# 11: feature.json names no model twice: similar's model is null for a unit of the feature's
#    own model and its slug column is there only when some unit has one; histogram gives its
#    bins' range [lo, hi] (bins of equal width), not every edge (assets.expand_record writes
#    them out as before: what pipeline.open returns); the examples' thumbnails are one URL
#    template, images ("../../examples/e{example}.webp"), where every example has one; the
#    primary recipe's entry of recipes is its name alone (its fields: the record's own).
# 12: a visualization made with several images per unit (``--diversity N``) has a
#    ``diversity`` field: the further images' URLs (``diversity_file``), their activations and
#    the mean pairwise similarity of all N; the page shows the N images side by side.
# 13: with a judge, ``diversity`` has ``recognisability``: each further image's 2-AFC and
#    transferability on image 0's trials; the page states each image's 2-AFC under it.
# 14: the site's images are AVIF (``store.display_bytes``: 4:4:4, >= 38 dB), not WebP: the
#    same images at 36-64% fewer bytes; their files end in ``.avif``.
# 15: feature.json's ``similar`` has ``thumb`` (per unit: its number in ``thumbs``, the
#    visualization files beside the similar units' pages; null: none shown) and ``thumbs``;
#    the page's script draws the similar units from them (the page holds the heading alone);
#    ``similar``'s ``model`` column is left out when every unit is of the feature's own model,
#    and ``class_names`` names each class once, in place of a ``label`` column beside every
#    ``label_index`` (assets.expand_record writes both out again).
SITE_FORMAT_VERSION = 15

IMAGE_SUFFIX = DISPLAY_SUFFIX  # every image the site writes (assets.write_display)
VISUALIZATION = f"visualization{IMAGE_SUFFIX}"
ATTRIBUTION = f"attribution{IMAGE_SUFFIX}"
FEATURE_JSON = "feature.json"
MODELS_JSON = "models.json"
CLASSES_JSON = "classes.json"
MAP_JSON = "map.json"
UNITS_JSON = "units.json"  # the layer page's grid data
FEATURES_PARQUET = "features.parquet"
COMPARE_DIR = "compare"  # the cross-model view (sites of two models or more)


def site_root(url: str | None) -> str | None:
    """The site's absolute URL with one trailing ``/``; None for none (None or "").

    >>> site_root("https://org.github.io/atlas"), site_root("")
    ('https://org.github.io/atlas/', None)
    """
    if not url:
        return None
    if not re.match(r"^https?://[^/]", url):
        raise AtlasError(f"a site URL must be an absolute http(s) URL such as "
                         f"https://org.github.io/atlas/, not {url!r}", option="site_url")
    return url.rstrip("/") + "/"


def model_slug(name: str) -> str:
    """A readable URL segment for a model name: ``[A-Za-z0-9._-]`` kept, others become ``-``."""
    segment = slug(name)
    return f"{segment}-model" if segment.lower() in RESERVED else segment


def atlas_slug(name: str, weights_id: str, model_kwargs: dict | None = None,
               pretrained_tag: str | None = None) -> str:
    """The URL segment of one model *and weights*: unique per atlas, stable across builds.

    Hub weights: the timm name with its pretrained tag (``pretrained_tag`` when the name has
    none). Random or local weights, or ``model_kwargs``: the name plus what the weights are (the
    file's stem, or ``random``) and 8 hex digits of a hash of the weights' identity (file
    sha256, seed) and the kwargs, so variants never share a page.

    >>> atlas_slug("vit_base_patch16_224.augreg2_in21k_ft_in1k", "hub")
    'vit_base_patch16_224.augreg2_in21k_ft_in1k'
    >>> atlas_slug("vit_base_patch16_224", "hub", pretrained_tag="augreg2_in21k_ft_in1k")
    'vit_base_patch16_224.augreg2_in21k_ft_in1k'
    >>> atlas_slug("vit_tiny_patch16_224", "vit-demo.safetensors@sha256:0123456789abcdef",
    ...            {"img_size": 64})
    'vit_tiny_patch16_224.vit-demo-b073bd1e'
    """

    kwargs = dict(model_kwargs or {})
    if weights_id == "hub" and not kwargs:
        base = name if "." in name or not pretrained_tag else f"{name}.{pretrained_tag}"
        return model_slug(base)
    what = "hub" if weights_id == "hub" else (
        "random" if weights_id.startswith("random") else weights_id.split("@", 1)[0])
    what = what.rsplit(".", 1)[0] if what.endswith((".safetensors", ".pth", ".pt", ".bin")) \
        else what
    return model_slug(f"{name}.{what}-{fingerprint([weights_id, kwargs], 8)}")


def recipe_files(names: list[str]) -> dict[str, tuple[str, str]]:
    """``{recipe: (visualization file, attribution file)}`` beside a feature page: the first
    (primary) recipe gets the plain names, every other one its name made URL-safe (as
    ``model_slug``) and unique: ``visualization-paper.avif``."""
    files: dict[str, tuple[str, str]] = {}
    used: set[str] = set()
    for i, name in enumerate(names):
        if i == 0:
            files[name] = (VISUALIZATION, ATTRIBUTION)
            continue
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "recipe"
        if slug in used:
            slug = f"{slug}-{i}"
        used.add(slug)
        files[name] = (f"visualization-{slug}{IMAGE_SUFFIX}", f"attribution-{slug}{IMAGE_SUFFIX}")
    return files


def diversity_file(visualization: str, image: int) -> str:
    """A unit's further image ``image`` (1 … N-1, ``--diversity N``) beside its page, named
    after the recipe's visualization file.

    >>> diversity_file(VISUALIZATION, 1), diversity_file("visualization-paper.avif", 2)
    ('visualization.d1.avif', 'visualization-paper.d2.avif')
    """
    stem, dot, suffix = visualization.rpartition(".")
    return f"{stem}.d{image}{dot}{suffix}"


class Layer(Protocol):
    """What the layout needs of a layer: ``pipeline.models.spec.FFNLayer`` has it, and so do
    ``LayerRef`` and the pages' ``LayerSummary``."""

    @property
    def index(self) -> int: ...  # the atlas's running layer number

    @property
    def kind(self) -> str: ...  # ffn | query | key | value

    @property
    def level(self) -> int: ...  # the block's FFN layer (an FFN layer's own index)


class LayerRef(NamedTuple):
    """A layer as ``models.json`` or ``feature.json`` name it: ``index`` (``layer``), ``kind``
    and, for the attention kinds, ``depth``; what ``layer_path`` needs where no spec is at hand.

    >>> LayerRef(9, "key", 1).level, LayerRef(3).level
    (1, 3)
    """

    index: int
    kind: str = "ffn"
    depth: int | None = None

    @property
    def level(self) -> int:
        return self.index if self.depth is None else self.depth


FFN = "ffn"
OTHER_KINDS = ("query", "key", "value")  # kinds with URLs of their own (models.spec.KINDS)


def model_dir(slug: str) -> str:
    return slug


def layer_path(layer: Layer | int) -> str:
    """A layer's folder below its model's: ``<layer>`` for an FFN layer (its index; a bare
    ``int`` is taken for an FFN layer's index), ``<kind>/<depth>`` for the key, query or value
    channels of a block, ``depth`` being the block's FFN layer (``feature.json``'s ``depth``).
    Both stay the same whichever kinds a build runs.

    >>> from pipeline.models.spec import FFNLayer
    >>> layer_path(3), layer_path(FFNLayer(3, "blocks.3.mlp.act", 0, 0, 1, (4, 4), 96))
    ('3', '3')
    >>> layer_path(FFNLayer(9, "blocks.1.attn.qkv", 0, 0, 1, (4, 4), 24, "key", 24, 1))
    'key/1'
    >>> layer_path(LayerRef(9, "keys", 1))
    Traceback (most recent call last):
    ...
    ValueError: unknown kind of layer 'keys'
    """
    if isinstance(layer, int):
        return str(layer)
    if layer.kind == FFN:
        return str(layer.index)
    if layer.kind not in OTHER_KINDS:
        raise ValueError(f"unknown kind of layer {layer.kind!r}")
    return f"{layer.kind}/{layer.level}"


def layer_name(layer: Layer | int, unit: int | str | None = None) -> str:
    """How the pages name a layer, or with ``unit`` one of its units, for a reader (titles,
    breadcrumbs, the Cite block, nav, the jump index): an FFN layer by its number, as pages
    have always cited it; the key, query or value channels of a block by kind and block
    (``depth``, the block's FFN layer), not by their layer number, which depends on the kinds
    a build runs. ``unit`` may be a placeholder such as ``"{unit}"`` for the browser to fill.

    >>> layer_name(3), layer_name(3, 17)
    ('layer 3', 'layer 3 · unit 17')
    >>> layer_name(LayerRef(9, "key", 3)), layer_name(LayerRef(9, "key", 3), 17)
    ('key channels of block 3', 'key channel 17 of block 3')
    """
    path = layer_path(layer)  # checks the kind
    if isinstance(layer, int) or layer.kind == FFN:
        return f"layer {path}" if unit is None else f"layer {path} · unit {unit}"
    if unit is None:
        return f"{layer.kind} channels of block {layer.level}"
    return f"{layer.kind} channel {unit} of block {layer.level}"


def layer_dir(slug: str, layer: Layer | int) -> str:
    """The layer page's folder (``layer_path``).

    >>> layer_dir("m", 3), layer_dir("m", LayerRef(9, "value", 1))
    ('m/3', 'm/value/1')
    """
    return f"{slug}/{layer_path(layer)}"


def layer_map(slug: str, layer: Layer | int) -> str:
    """The layer map's data, beside the layer page."""
    return f"{layer_dir(slug, layer)}/{MAP_JSON}"


def layer_units(slug: str, layer: Layer | int) -> str:
    """The layer grid's data (every unit with a page, in columns), beside the layer page.

    >>> layer_units("m", 3), layer_units("m", LayerRef(9, "key", 1))
    ('m/3/units.json', 'm/key/1/units.json')
    """
    return f"{layer_dir(slug, layer)}/{UNITS_JSON}"


def feature_dir(slug: str, layer: Layer | int, unit: int) -> str:
    """A feature page's folder: ``unit`` (the channel) below its layer's.

    >>> feature_dir("m", 3, 17), feature_dir("m", LayerRef(9, "key", 1), 17)
    ('m/3/17', 'm/key/1/17')
    """
    return f"{layer_dir(slug, layer)}/{unit}"


def up_to_model(slug: str, layer: Layer | int) -> str:
    """Relative URL from any feature page of ``layer`` to its model's folder.

    >>> up_to_model("m", 3), up_to_model("m", LayerRef(9, "query", 1))
    ('../../', '../../../')
    """
    return relative(model_dir(slug) + "/", feature_dir(slug, layer, 0))


def feature_source_pattern(slugs: Iterable[str]) -> re.Pattern[str]:
    """The Markdown sources (``<feature_dir>/index.md``) of the feature pages of ``slugs``.

    >>> p = feature_source_pattern(["vit"])
    >>> [bool(p.match(s)) for s in ("vit/3/17/index.md", "vit/key/1/17/index.md",
    ...                             "vit/words/index.md", "vit/key/1/index.md")]
    [True, True, False, False]
    """
    names = "|".join(re.escape(s) for s in sorted(slugs))
    kinds = "|".join(OTHER_KINDS)
    return re.compile(rf"^(?:{names})/(?:(?:{kinds})/)?\d+/\d+/index\.md$")


def words_dir(slug: str) -> str:
    """The search-by-word page; the word index's shards lie beside it."""
    return f"{slug}/words"


def word_shard(slug: str, number: int) -> str:
    return f"{words_dir(slug)}/w{number}.json"


def classes_dir(slug: str) -> str:
    """The header search's class index: ``index.json`` and its shards beside it.

    >>> classes_dir("m"), class_index("m"), class_shard("m", 3)
    ('m/classes', 'm/classes/index.json', 'm/classes/c3.json')
    """
    return f"{slug}/classes"


def class_index(slug: str) -> str:
    """The class index's head (``search.ClassIndex.head``)."""
    return f"{classes_dir(slug)}/index.json"


def class_shard(slug: str, number: int) -> str:
    """Shard ``number`` of the class index (``search.ClassIndex.shards``)."""
    return f"{classes_dir(slug)}/c{number}.json"


def export_file(slug: str) -> str:
    """The model's bulk export: one Parquet row per feature page."""
    return f"{slug}/{FEATURES_PARQUET}"


def example_file(slug: str, number: int, suffix: str = IMAGE_SUFFIX) -> str:
    """Site path of dataset example ``number``'s thumbnail, one per model shared by every page
    that shows it.

    >>> example_file("m", 7)
    'm/examples/e7.avif'
    """
    return f"{slug}/examples/e{number}{suffix}"


def relative(target: str, from_dir: str) -> str:
    """Relative URL from the directory page ``from_dir`` (site path) to ``target`` (site path).

    A trailing ``/`` on ``target`` is kept (directory URLs). As ``posixpath.relpath`` on the
    two, without its look at the working directory (a feature page computes a few dozen).

    >>> relative("m/key/1/17/", "m/3/16"), relative("m/", "m/3"), relative("", "m/words")
    ('../../key/1/17/', '../', '../..')
    >>> relative("m/3/", "m/3"), relative("method/#relations", "m/key/0")
    ('./', '../../../method/#relations')
    """
    to = [p for p in target.split("/") if p not in ("", ".")]
    start = [p for p in (from_dir or "").split("/") if p not in ("", ".")]
    if ".." in to or ".." in start:
        rel = posixpath.relpath(target.rstrip("/") or ".", from_dir or ".")
    else:
        common = 0
        while common < min(len(to), len(start)) and to[common] == start[common]:
            common += 1
        rel = "/".join([".."] * (len(start) - common) + to[common:]) or "."
    if target.endswith("/"):
        rel = "./" if rel == "." else rel + "/"
    return rel
