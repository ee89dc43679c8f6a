"""The pages above the features: home section, model page (layer strips, progression of
typical units) and layer pages (the map of the layer, when related, and the grid).

They render through the full Material theme, so their Markdown is front matter plus raw HTML
blocks (every dataset/model string escaped with ``markup.text``); they are few.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.site import fidelity, labels, urls
from pipeline.site.data import AtlasView, LayerView
from pipeline.site.feature import word_query
from pipeline.site.grid import grid_controls, grid_html
from pipeline.site.markup import attr, front_matter, text

STRIP = 8  # units per layer on the model page
COMMON_WORDS = 8  # most common labels per layer on the model page


@dataclass
class LayerSummary:
    """What the model and home pages show of one layer."""

    layer: int
    module: str
    stage: int
    grid: tuple[int, int]
    units: int  # units of the layer
    pages: int  # units with a page
    visualized: int
    indexed: bool
    representatives: list[tuple[int, str | None]]  # (unit, visualization file), best first
    labelled: int = 0  # units with a page and a label
    words: tuple[tuple[str, int], ...] = ()  # most common labels: (concept, units)
    # typical units (layer map's k-means clusters), largest cluster first: (unit, thumb, size)
    typical: tuple[tuple[int, str | None, int], ...] = ()
    measured: int = 0  # visualized units whose fidelity was measured (primary recipe)
    trusted: int = 0  # of those, the trusted ones (``fidelity.trusted``)
    kind: str = "ffn"  # ffn | query | key | value
    depth: int | None = None  # the block's FFN layer (None: ``layer``, an FFN layer)

    @property
    def index(self) -> int:
        """The layer's number (``layer``): with ``kind`` and ``level``, a ``urls.Layer``."""
        return self.layer

    @property
    def level(self) -> int:
        return self.layer if self.depth is None else self.depth

    @classmethod
    def of(cls, view: LayerView) -> LayerSummary:
        reps = view.representatives(STRIP)
        scores = dict(zip(view.units, view.ranking_scores(), strict=True))
        reps.sort(key=lambda u: -scores[u])
        s = view.spec
        best = [view.label(u) for u in view.labelled]
        fids = [f for u in view.units if (f := view.fidelity(u)) is not None]
        return cls(s.index, s.module + (f" (call {s.call})" if s.call else ""), s.stage, s.grid,
                   s.units, len(view.units), len(view.visualized), view.index is not None,
                   [(u, view.thumbnail(u)) for u in reps], len(best),
                   tuple(labels.common(best, COMMON_WORDS)),
                   tuple((t["unit"], view.thumbnail(t["unit"]), t["size"]) for t in view.typical
                         if t["unit"] in set(view.units)),
                   len(fids), sum(fidelity.trusted(f) for f in fids), s.kind, s.depth)


def named(layer: urls.Layer, unit: int | None = None) -> str:
    """A layer, or one of its units, by name (``urls.layer_name``); an FFN unit's thumbnail
    keeps its short "layer 3 unit 17".

    >>> s = LayerSummary(9, "blocks.1.attn.qkv", 0, (4, 4), 8, 8, 8, True, [], kind="key",
    ...                  depth=1)
    >>> named(s), named(s, 5), named(LayerSummary(3, "b", 0, (4, 4), 8, 8, 8, True, []), 5)
    ('key channels of block 1', 'key channel 5 of block 1', 'layer 3 unit 5')
    """
    if unit is not None and layer.kind == urls.FFN:
        return f"layer {layer.index} unit {unit}"
    return urls.layer_name(layer, unit)


def _thumb(href: str, src: str | None, label: str, px: int, extra: str = "",
           caption: str = "") -> str:
    """A linked, lazy-loaded visualization (or a placeholder for units without one)."""
    inner = (f'<img src="{attr(src)}" loading="lazy" alt="{attr(label)}" width="{px}" '
             f'height="{px}">' if src else f'<span class="atlas-novis">{text(label)}</span>')
    return f'<a href="{attr(href)}" title="{attr(label)}"{extra}>{inner}{caption}</a>'


# the layer page's recognisability filter: (value, words); atlas.js knows the values
AFC_FILTERS = (("", "any 2-AFC"), ("chance", "better than chance (2-AFC > 0.5)"),
               ("best", "at least its best example's 2-AFC"), ("0.75", "2-AFC ≥ 0.75"),
               ("0.9", "2-AFC ≥ 0.9"))
# the tile switch: (value, words); "acc" only when the atlas has accentuations, "ex" only
# with a dataset index
TILE_VIEWS = (("vis", "visualization"), ("acc", "accentuation"), ("ex", "best example"))


def _controls(view: LayerView, measured: bool, recognised: bool = False,
              tiles: tuple[str, ...] = (), foreground: bool = False) -> str:
    """Filter box; where fidelity was measured, sort order and the "only trusted" switch;
    where recognisability was, its sort and filter; with masks (``foreground``), the sort by
    foreground share; with ``tiles`` (values of ``TILE_VIEWS``, two or more), the switch of
    what each tile shows."""
    what = "unit number, label or top class" if view.labels else "unit number or top class"
    html = ('<div class="atlas-filter"><input type="search" class="atlas-filter-input" '
            f'placeholder="Filter by {what}" aria-label="Filter units">')
    if measured or foreground:
        html += (
            ' <label>Sort <select class="atlas-sort" aria-label="Sort units">'
            '<option value="unit">by unit number</option>'
            + ('<option value="v">by × best dataset example (highest first)</option>'
               '<option value="r">by z-rank in the layer (best first)</option>'
               if measured else "")
            + ('<option value="a">by recognisability, 2-AFC (highest first)</option>'
               if recognised else "")
            + ('<option value="f">by foreground share (most on the object first)</option>'
               '<option value="g">by foreground share above area (most above chance '
               'first)</option>' if foreground else "")
            + '</select></label>')
    if measured:
        top = fidelity.near_top(view.spec.units)
        html += (
            f' <label title="Trusted: the visualization beats the unit\'s best dataset image '
            f'(at least 1×) and ranks {top} or better in this layer by z-score">'
            '<input type="checkbox" class="atlas-trusted"> only trusted</label>')
    if recognised:
        html += (' <label title="Recognisability: how often the judge, given the visualization, '
                 'tells the unit\'s top dataset images from its bottom ones (2-AFC)">'
                 '<select class="atlas-afc" aria-label="Filter by recognisability">'
                 + "".join(f'<option value="{v}">{text(w)}</option>' for v, w in AFC_FILTERS)
                 + "</select></label>")
    if len(tiles) > 1:
        names = dict(TILE_VIEWS)
        html += ('<fieldset class="atlas-tile-switch"><legend>Tiles show</legend>'
                 + "".join(f'<label><input type="radio" name="atlas-tile" value="{v}"'
                           f'{" checked" if v == "vis" else ""}> {names[v]}</label>'
                           for v in tiles)
                 + "</fieldset>")
    return html + ' <span class="atlas-filter-count" aria-live="polite"></span></div>'


def map_record(atlas: AtlasView, view: LayerView) -> dict:
    """``<slug>/<layer>/map.json``: the layer map (``store.layer_map``) in columns, for the
    layer page's canvas. ``units``, ``x``, ``y`` (in [0, 1], one scale for both axes) and
    ``thumb`` (index into ``thumbs``, the visualization file names beside a feature page,
    primary recipe first; -1: not visualized) of every mapped unit that has a page;
    ``typical``: ``[unit, cluster size]``, largest cluster first."""
    m = view.map or {"method": None, "preservation": None, "units": [], "typical": []}
    files = urls.recipe_files(atlas.recipes)
    thumbs = [files[r][0] for r in atlas.recipes]
    number = {name: i for i, name in enumerate(thumbs)}
    pages = set(view.units)
    shown = [p for p in m["units"] if p["unit"] in pages]
    return {
        "format_version": urls.SITE_FORMAT_VERSION, "model": atlas.model, "layer": view.layer,
        "method": m["method"], "preservation": m["preservation"], "thumbs": thumbs,
        "units": [p["unit"] for p in shown], "x": [p["x"] for p in shown],
        "y": [p["y"] for p in shown],
        "thumb": [number.get(view.thumbnail(p["unit"]) or "", -1) for p in shown],
        "typical": [[t["unit"], t["size"]] for t in m["typical"] if t["unit"] in pages],
    }


MAP_NAMES = {"umap": "UMAP", "pca": "PCA"}


def _map_section(atlas: AtlasView, view: LayerView) -> str:
    """The layer map: a canvas that ``assets/atlas.js`` fills from ``map.json``, and its legend
    (method and neighbour preservation)."""
    m = view.map
    if m is None:
        return ""
    method = MAP_NAMES.get(str(m["method"]), str(m["method"]))
    probe = (atlas.relations_info or {}).get("probe_images")
    how = urls.relative("method/", urls.layer_dir(atlas.slug, view.spec)) + "#relations"
    over = f" over {probe:,} probe images" if probe else ""
    return (
        '<section class="atlas-map" data-search-exclude>\n'
        f"<p class=\"atlas-map-legend\">Map of the layer: <b>{text(method)}</b> of each unit's "
        f"activation profile{over}: units close together respond to the same images. "
        f'Neighbour preservation <b class="atlas-map-preservation">{m["preservation"]:.0%}</b>'
        ": of each unit's 10 most correlated units, the share among its 10 nearest on the map. "
        "Scroll or use + / − to zoom (thumbnails appear when zoomed in), drag to pan, click a "
        "unit to open it; ringed: the layer's typical units. "
        f'<a href="{attr(how)}">How the map is made</a>.</p>\n'
        f'<div class="atlas-map-view" data-src="{urls.MAP_JSON}">'
        '<canvas class="atlas-map-canvas" width="720" height="480" role="img" '
        'aria-label="Map of the units of the layer (the grid below lists the same units)">'
        "</canvas>"
        '<div class="atlas-map-tools"><button type="button" data-zoom="in" '
        'aria-label="Zoom in">+</button><button type="button" data-zoom="out" '
        'aria-label="Zoom out">−</button><button type="button" data-zoom="reset">reset'
        '</button> <output class="atlas-map-msg" aria-live="polite"></output></div></div>\n'
        "</section>\n\n"
    )


def layer_page(atlas: AtlasView, view: LayerView, prev: int | None, nxt: int | None) -> str:
    """Every unit's visualization as a grid drawn from ``units.json`` (``grid``), with a
    unit/class/label filter and, where fidelity was measured, sorting by it and an "only
    trusted" filter."""
    s = view.spec
    here = urls.layer_dir(atlas.slug, s)
    links = [f'<a href="{urls.relative(atlas.slug + "/", here)}">all layers</a>']
    if atlas.label_info is not None:
        words = urls.relative(urls.words_dir(atlas.slug) + "/", here)
        links.append(f'<a href="{words}">search by word</a>')

    def other(index: int) -> str:
        return urls.relative(urls.layer_dir(atlas.slug, atlas.spec.layers[index]) + "/", here)

    if prev is not None:
        links.insert(0, f'<a href="{other(prev)}">‹ {named(atlas.spec.layers[prev])}</a>')
    if nxt is not None:
        links.append(f'<a href="{other(nxt)}">{named(atlas.spec.layers[nxt])} ›</a>')
    facts = (f"module <code>{text(s.module)}</code> · stage {s.stage} · "
             f"patch grid {s.grid[0]}×{s.grid[1]} · {s.units} units · "
             f"{len(view.visualized)} visualized · "
             f"{'dataset index' if view.index is not None else 'no dataset index'}")
    controls = grid_controls(view)
    examples = atlas.examples is not None and view.index is not None
    return (
        front_matter({"title": f"{atlas.slug} · {named(s)}", "model": atlas.slug})
        + f'\n<p class="atlas-facts">{facts}</p>\n\n'
        + f'<p class="atlas-links">{" · ".join(links)}</p>\n\n'
        + _map_section(atlas, view)
        + _controls(view, controls.measured, controls.recognised, _tile_views(view, examples),
                    controls.foreground) + "\n\n"
        + grid_html(view)
    )


def _tile_views(view: LayerView, examples: bool) -> tuple[str, ...]:
    """What the layer page's tiles can show (``TILE_VIEWS`` values)."""
    return tuple(v for v, _ in TILE_VIEWS
                 if v == "vis" or (v == "acc" and view.accented) or (v == "ex" and examples))


def _layer_link(slug: str, summary: LayerSummary, here: str) -> str:
    """Relative URL of the layer page of ``summary`` from the page at ``here`` (a site path).

    >>> s = LayerSummary(9, "blocks.1.attn.qkv", 0, (4, 4), 8, 8, 8, True, [], kind="key",
    ...                  depth=1)
    >>> _layer_link("m", s, "m"), _layer_link("m", s, "m/2")
    ('key/1/', '../key/1/')
    """
    return attr(urls.relative(urls.layer_dir(slug, summary) + "/", here))


def _strip(slug: str, summary: LayerSummary, here: str, n: int, px: int) -> str:
    cells = []
    for unit, thumb in summary.representatives[:n]:
        fdir = urls.feature_dir(slug, summary, unit)
        src = urls.relative(f"{fdir}/{thumb}", here) if thumb else None
        cells.append(_thumb(urls.relative(fdir + "/", here), src, named(summary, unit), px))
    return "".join(cells)


def progression(atlas: AtlasView, summaries: list[LayerSummary]) -> str:
    """The model page's progression view: each layer's typical units (one per cluster of the
    layer map, largest first), early to late; empty when no layer has a map."""
    rows = []
    here = urls.model_dir(atlas.slug)
    for s in summaries:
        if not s.typical:
            continue
        cells = []
        for unit, thumb, size in s.typical:
            fdir = urls.feature_dir(atlas.slug, s, unit)
            src = urls.relative(f"{fdir}/{thumb}", here) if thumb else None
            cells.append(_thumb(urls.relative(fdir + "/", here), src,
                                f"{named(s, unit)} · typical of {size} units", 64,
                                f' data-u="{unit}"'))
        rows.append(f'<div class="atlas-strip-row" data-layer="{s.layer}">'
                    f'<a class="atlas-strip-label" href="{_layer_link(atlas.slug, s, here)}">'
                    f'{named(s).capitalize()}</a>'
                    f'<div class="atlas-strip">{"".join(cells)}</div></div>')
    if not rows:
        return ""
    method = urls.relative("method/", here) + "#relations"
    return (
        "## Progression: typical units by layer\n\n"
        "<p>Each row shows a layer's most typical units: the unit nearest the centre of each "
        "cluster of its units' activation profiles (k-means), largest cluster first. Read "
        "down the rows to see features specialize from early to late layers "
        f'(<a href="{method}">how</a>).</p>\n\n'
        '<div class="atlas-strips atlas-progression" data-search-exclude>\n'
        + "\n".join(rows) + "\n</div>\n\n"
    )


def model_facts(atlas: AtlasView, summaries: list[LayerSummary]) -> list[tuple[str, str]]:
    ex = atlas.examples
    cfg = atlas.config
    card = atlas.card
    rows = [
        ("model", atlas.model),
        ("family", atlas.spec.family),
        ("parameters", _count(atlas.spec.parameters)),
        ("weights", atlas.weights),
        ("input size", "×".join(str(v) for v in atlas.spec.input_size)),
        ("trained on", card.training or "not stated here"),
        ("accuracy", card.accuracy or "not measured here"),
        ("FFN layers", f"{len(atlas.spec.layers)} ({len(summaries)} in this atlas)"),
        ("units", f"{atlas.spec.total_units} ({sum(s.pages for s in summaries)} pages, "
                  f"{sum(s.visualized for s in summaries)} visualized)"),
        ("dataset", atlas.dataset),
        ("images seen", str(ex.images_seen) if ex is not None else "not indexed"),
        ("top-k", str(cfg.get("topk", "–"))),
        ("recipe", f"{cfg.get('recipe', '–')}"
                   + (f", {cfg['steps']} steps" if cfg.get("steps") not in (None, 1)
                      else ", 1 step" if cfg.get("steps") == 1 else "")),
        ("labels", f"{labels.labeler_line(atlas.label_info)} · "
                   f"{sum(s.labelled for s in summaries)} units labelled"
                   if atlas.label_info is not None else "none"),
        ("atlas version", atlas.atlas_version),
    ]
    return rows


def _word_link(concept: str, count: int | None, here: str, slug: str) -> str:
    """A concept as a link to the word page's results for it, with its unit count."""
    href = urls.relative(urls.words_dir(slug) + "/", here) + word_query(concept)
    small = f" <small>{count}</small>" if count is not None else ""
    return (f'<a href="{attr(href)}" title="units labelled {attr(concept)}">{text(concept)}</a>'
            + small)


def words_by_layer(atlas: AtlasView, summaries: list[LayerSummary]) -> str:
    """The model page's "words by layer": each layer's most common labels, early to late."""
    here = urls.model_dir(atlas.slug)
    rows = []
    for s in summaries:
        words = " · ".join(_word_link(c, n, here, atlas.slug) for c, n in s.words) or "–"
        rows.append(f'<tr><th><a href="{_layer_link(atlas.slug, s, here)}">'
                    f'{named(s).capitalize()}</a></th>'
                    f'<td>{s.labelled} of {s.pages}</td><td class="atlas-layer-words">{words}'
                    "</td></tr>")
    method = urls.relative(labels.METHOD_ANCHOR, here)
    return (
        "## Words by layer\n\n"
        "<p>Each unit's <b>label</b> is the concept that describes it best (CLIP-Dissect, "
        f'SoftWPMI: see <a href="{method}">Method</a>); labels by '
        f"<code>{text(atlas.labeler)}</code>. Each layer's most common labels, with how many of "
        "its units each labels, show in words how features specialize from early to late "
        'layers. <a href="words/">Search by word</a> finds the units of any concept.</p>\n\n'
        '<table class="atlas-words-table" data-search-exclude><thead><tr><th>layer</th>'
        "<th>labelled</th><th>most common labels (units)</th></tr></thead><tbody>\n"
        + "\n".join(rows) + "\n</tbody></table>\n\n"
    )


def model_page(atlas: AtlasView, summaries: list[LayerSummary]) -> str:
    """Facts about the model and run, then one strip of top units per layer, early to late."""
    here = urls.model_dir(atlas.slug)
    facts = "".join(f"<tr><th>{text(k)}</th><td>{text(v)}</td></tr>"
                    for k, v in model_facts(atlas, summaries))
    rows = []
    for s in summaries:
        label = (f'<a class="atlas-strip-label" href="{_layer_link(atlas.slug, s, here)}">'
                 f'{named(s).capitalize()}'
                 f'<small>{text(s.module)} · stage {s.stage} · {s.grid[0]}×{s.grid[1]} · '
                 f'{s.units} units</small></a>')
        strip = _strip(atlas.slug, s, here, STRIP, 80)
        rows.append(f'<div class="atlas-strip-row">{label}'
                    f'<div class="atlas-strip">{strip}</div></div>')
    card = atlas.card
    about = (f"<p><b>{text(card.title)}</b>" + (f": {text(card.summary)}" if card.summary else "")
             + "</p>\n" if card.title else "")
    return (
        front_matter({"title": atlas.slug, "model": atlas.slug})
        + f"\n<h1>{text(atlas.model)}</h1>\n\n"
        + f'<p class="atlas-purpose">The atlas of one model, <code>{text(atlas.slug)}</code>: '
          "what the model is, then its FFN layers from early to late, each as a strip of its "
          "most active units. Open a layer for all of its units and its map, or a unit for "
          "its feature page.</p>\n"
        + about
        + f'\n<table class="atlas-facts-table">{facts}</table>\n\n'
        + "## Layers, early to late\n\n"
        + "Each row shows the layer's units with the highest dataset activation "
          "(or visualization objective when the layer has no dataset index).\n\n"
        + '<div class="atlas-strips" data-search-exclude>\n' + "\n".join(rows) + "\n</div>\n\n"
        + progression(atlas, summaries)
        + (words_by_layer(atlas, summaries) if atlas.label_info is not None else "")
    )


def words_page(atlas: AtlasView, summaries: list[LayerSummary], n_common: int = 40) -> str:
    """The search-by-word page: a text field (assets/atlas.js fetches the word index) and,
    to start from, the model's most common labels."""
    here = urls.words_dir(atlas.slug)
    totals: dict[str, int] = {}
    for s in summaries:  # common words of each layer; a sum over layers, enough to start from
        for concept, n in s.words:
            totals[concept] = totals.get(concept, 0) + n
    common = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:n_common]
    links = " · ".join(_word_link(c, n, here, atlas.slug) for c, n in common)
    hint = "A word: " + ", ".join(c for c, _ in common[:3]) + "…" if common else "A word"
    base = urls.relative("", here)
    method = urls.relative(labels.METHOD_ANCHOR, here)
    return (
        front_matter({"title": f"{atlas.slug} · search by word", "model": atlas.slug})
        + f"\n<p>Find the units of <b>{text(atlas.model)}</b> that a word labels: every unit "
          "whose top concepts hold it, ranked by SoftWPMI score. A unit's label is its best "
          f'concept (CLIP-Dissect; <a href="{method}">how labels are made</a>); labels by '
          f"<code>{text(labels.labeler_line(atlas.label_info))}</code>.</p>\n\n"
        + f'<form class="atlas-words" role="search" autocomplete="off" data-base="{attr(base)}" '
          f'data-model="{attr(atlas.slug)}">\n'
          '<input type="search" name="word" class="atlas-words-input" '
          f'placeholder="{attr(hint)}" aria-label="Search units by word">\n'
          '<output class="atlas-words-msg" aria-live="polite"></output>\n'
          "</form>\n\n"
        + '<div class="atlas-words-suggest"></div>\n\n'
        + '<div class="atlas-words-results" data-search-exclude></div>\n\n'
        + '<p><button type="button" class="atlas-words-more" hidden>Show more</button></p>\n\n'
        + (f'<p class="atlas-words-common" data-search-exclude>Common labels: {links}</p>\n'
           if links else "")
    )


def _count(n: int | None) -> str:
    """A parameter count in words: 5.7 M, 86.6 M, 1.2 B."""
    if n is None:
        return "–"
    return f"{n / 1e9:.1f} B" if n >= 1e9 else f"{n / 1e6:.1f} M" if n >= 1e5 else f"{n:,}"


def card_facts(atlas: AtlasView, summaries: list[LayerSummary]) -> list[tuple[str, str]]:
    """What a model card says: family, parameters, input size, layers, units, dataset,
    recipe, labels and how many visualizations are trusted (where measured)."""
    cfg = atlas.config
    measured = sum(s.measured for s in summaries)
    trusted = sum(s.trusted for s in summaries)
    rows = [
        ("family", atlas.spec.family),
        ("parameters", _count(atlas.spec.parameters)),
        ("input", "×".join(str(v) for v in atlas.spec.input_size)),
        ("FFN layers", f"{len(summaries)} of {len(atlas.spec.layers)}"),
        ("features", f"{sum(s.pages for s in summaries):,} "
                     f"({sum(s.visualized for s in summaries):,} visualized)"),
        ("trained on", atlas.card.training or "not stated here"),
        ("accuracy", atlas.card.accuracy or "not measured here"),
        ("dataset", atlas.dataset),
        ("recipe", str(cfg.get("recipe", "–"))),
        ("labels", labels.labeler_line(atlas.label_info) or "–"
         if atlas.label_info is not None else "none"),
        ("trusted", f"{trusted:,} of {measured:,} measured visualizations ("
                    f"{100 * trusted / measured:.0f}%)" if measured else "not measured"),
    ]
    return rows


def home_section(atlas: AtlasView, summaries: list[LayerSummary]) -> str:
    """The home page's model card: the model's facts and one representative feature per
    layer."""
    slug = atlas.slug
    cells = []
    for s in summaries:
        if not s.representatives:
            continue
        unit, thumb = s.representatives[0]
        fdir = urls.feature_dir(slug, s, unit)
        src = f"{fdir}/{thumb}" if thumb else None
        cells.append(f'<figure>{_thumb(fdir + "/", src, named(s, unit), 72)}'
                     f"<figcaption>L{s.layer}</figcaption></figure>")
    facts = "".join(f"<div><dt>{text(k)}</dt><dd>{text(v)}</dd></div>"
                    for k, v in card_facts(atlas, summaries))
    return (
        f'<div class="atlas-model-card" data-model="{attr(slug)}">\n'
        f'<h3><a href="{attr(slug)}/">{text(atlas.model)}</a></h3>\n'
        f'<p>weights <code>{text(atlas.weights)}</code> · page <code>{text(slug)}/</code></p>\n'
        + (f"<p>{text(atlas.card.title)}" + (f": {text(atlas.card.summary)}"
                                             if atlas.card.summary else "") + "</p>\n"
           if atlas.card.title else "")
        + f'<dl class="atlas-card-facts">{facts}</dl>\n'
        f'<div class="atlas-strip atlas-home-strip" data-search-exclude>{"".join(cells)}</div>\n'
        f"</div>\n"
    )


COMPARE_SHOWN = 4  # units per cell of the cross-model view


def depth_rows(n_layers: list[int]) -> list[list[int]]:
    """For models with ``n_layers`` layers each: one row per relative depth step (as many
    steps as the deepest model has layers), the layer of each model nearest that depth.

    >>> depth_rows([4, 2])
    [[0, 0], [1, 0], [2, 1], [3, 1]]
    """
    steps = max(n_layers)
    rows = []
    for r in range(steps):
        depth = r / (steps - 1) if steps > 1 else 0.0
        rows.append([round(depth * (n - 1) + 1e-9) if n > 1 else 0 for n in n_layers])
    return rows


def compare_page(models: list[tuple[AtlasView, list[LayerSummary]]]) -> str:
    """The cross-model view: the layers of every model at the same relative depth side by
    side (each cell the layer's top units and most common labels, linking to the layer)."""
    here = "compare"
    head = "".join(f'<th scope="col"><a href="{attr(urls.relative(a.slug + "/", here))}">'
                   f"{text(a.model)}</a><small>{text(a.slug)}</small></th>"
                   for a, _ in models)
    body = []
    for row in depth_rows([len(s) for _, s in models]):
        depth = row[0] / (len(models[0][1]) - 1) if len(models[0][1]) > 1 else 0.0
        cells = []
        for (atlas, summaries), i in zip(models, row, strict=True):
            s = summaries[i]
            rel = i / (len(summaries) - 1) if len(summaries) > 1 else 0.0
            strip = _strip(atlas.slug, s, here, COMPARE_SHOWN, 64)
            words = " · ".join(text(w) for w, _ in s.words[:3])
            cells.append(
                f'<td data-model="{attr(atlas.slug)}" data-layer="{s.layer}">'
                f'<a class="atlas-compare-layer" href="'
                f'{_layer_link(atlas.slug, s, here)}">'
                f"{named(s)}</a> <small>depth {rel:.2f}</small>"
                f'<div class="atlas-strip">{strip}</div>'
                + (f'<p class="atlas-compare-words">{words}</p>' if words else "") + "</td>")
        body.append(f'<tr data-depth="{depth:.3f}"><th scope="row">{100 * depth:.0f}%</th>'
                    + "".join(cells) + "</tr>")
    return (
        front_matter({"title": "Compare models"})
        + "\n# Compare models by depth\n\n"
        "<p>Each row shows, for every model of this site, its FFN layer nearest the same "
        "relative depth (0% the first layer, 100% the last), with the layer's units of highest "
        "dataset activation and its most common labels. Similar units across models, where "
        "the atlases share a probe set, are listed on each feature page.</p>\n\n"
        '<div class="atlas-compare-wrap" data-search-exclude><table class="atlas-compare">'
        f'<thead><tr><th scope="col">depth</th>{head}</tr></thead>'
        f'<tbody>{"".join(body)}</tbody></table></div>\n'
    )
