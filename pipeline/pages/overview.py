"""The pages above the features: home section, model page (layer strips) and layer grids.

They render through the full Material theme, so their Markdown is front matter plus raw HTML
blocks (every dataset/model string escaped with ``markup.text``); they are few.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.pages import fidelity, urls
from pipeline.pages.data import AtlasView, LayerView
from pipeline.pages.markup import attr, front_matter, text

STRIP = 8  # units per layer on the model page
GRID_PX = 96


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

    @classmethod
    def of(cls, view: LayerView) -> LayerSummary:
        reps = view.representatives(STRIP)
        scores = dict(zip(view.units, view.ranking_scores(), strict=True))
        reps.sort(key=lambda u: -scores[u])
        s = view.spec
        return cls(s.index, s.module + (f" (call {s.call})" if s.call else ""), s.stage, s.grid,
                   s.units, len(view.units), len(view.visualized), view.index is not None,
                   [(u, view.thumbnail(u)) for u in reps])


def _thumb(href: str, src: str | None, label: str, px: int, extra: str = "",
           caption: str = "") -> str:
    """A linked, lazy-loaded visualization (or a placeholder for units without one)."""
    inner = (f'<img src="{attr(src)}" loading="lazy" alt="{attr(label)}" width="{px}" '
             f'height="{px}">' if src else f'<span class="atlas-novis">{text(label)}</span>')
    return f'<a href="{attr(href)}" title="{attr(label)}"{extra}>{inner}{caption}</a>'


def _fidelity_data(fid: dict | None) -> str:
    """A grid cell's fidelity as data attributes (primary recipe): ``data-v`` times the best
    dataset example, ``data-r`` the z-rank, ``data-t`` 1 if trusted (``fidelity.trusted``)."""
    if fid is None:
        return ""
    out = ""
    if fid["vs_best_example"] is not None:
        out += f' data-v="{fid["vs_best_example"]!r}"'
    if fid["z_rank"] is not None:
        out += f' data-r="{fid["z_rank"]}"'
    return out + (' data-t="1"' if fidelity.trusted(fid) else "")


def _controls(view: LayerView, measured: bool) -> str:
    """Filter box, and where fidelity was measured, sort order and the "only trusted" switch."""
    html = ('<div class="atlas-filter"><input type="search" class="atlas-filter-input" '
            'placeholder="Filter by unit number or top class" aria-label="Filter units">')
    if measured:
        top = fidelity.near_top(view.spec.units)
        html += (
            ' <label>Sort <select class="atlas-sort" aria-label="Sort units">'
            '<option value="unit">by unit number</option>'
            '<option value="v">by × best dataset example (highest first)</option>'
            '<option value="r">by z-rank in the layer (best first)</option>'
            '</select></label>'
            f' <label title="Trusted: the visualization beats the unit\'s best dataset image '
            f'(at least 1×) and ranks {top} or better in this layer by z-score">'
            '<input type="checkbox" class="atlas-trusted"> only trusted</label>')
    return html + ' <span class="atlas-filter-count" aria-live="polite"></span></div>'


def layer_page(atlas: AtlasView, view: LayerView, prev: int | None, nxt: int | None) -> str:
    """Every unit's visualization as a lazy-loaded grid, with a unit/class filter and, where
    fidelity was measured, sorting by it and an "only trusted" filter."""
    s = view.spec
    here = urls.layer_dir(atlas.slug, s.index)
    ex = atlas.examples
    links = [f'<a href="{urls.relative(atlas.slug + "/", here)}">all layers</a>']
    if prev is not None:
        links.insert(0, f'<a href="../{prev}/">‹ layer {prev}</a>')
    if nxt is not None:
        links.append(f'<a href="../{nxt}/">layer {nxt} ›</a>')
    facts = (f"module <code>{text(s.module)}</code> · stage {s.stage} · "
             f"patch grid {s.grid[0]}×{s.grid[1]} · {s.units} units · "
             f"{len(view.visualized)} visualized · "
             f"{'dataset index' if view.index is not None else 'no dataset index'}")
    cells = []
    measured = False
    for u in view.units:
        classes = view.top_class_names(u, ex)
        thumb = view.thumbnail(u)
        src = f"{u}/{thumb}" if thumb else None
        fid = view.fidelity(u)
        measured |= fid is not None
        data = f' data-u="{u}" data-c="{attr(chr(10).join(classes))}"' + _fidelity_data(fid)
        label = f"unit {u}" + (f" · {fidelity.short(fid)}" if fid else "")
        cells.append(_thumb(f"{u}/", src, label, GRID_PX, data, f"<span>{u}</span>"))
    return (
        front_matter({"title": f"{atlas.slug} · layer {s.index}", "model": atlas.slug})
        + f'\n<p class="atlas-facts">{facts}</p>\n\n'
        + f'<p class="atlas-links">{" · ".join(links)}</p>\n\n'
        + _controls(view, measured) + "\n\n"
        + '<div class="atlas-grid" data-search-exclude>\n' + "\n".join(cells) + "\n</div>\n"
    )


def _strip(slug: str, summary: LayerSummary, here: str, n: int, px: int) -> str:
    cells = []
    for unit, thumb in summary.representatives[:n]:
        fdir = urls.feature_dir(slug, summary.layer, unit)
        src = urls.relative(f"{fdir}/{thumb}", here) if thumb else None
        cells.append(_thumb(urls.relative(fdir + "/", here), src,
                            f"layer {summary.layer} unit {unit}", px))
    return "".join(cells)


def model_facts(atlas: AtlasView, summaries: list[LayerSummary]) -> list[tuple[str, str]]:
    ex = atlas.examples
    cfg = atlas.config
    rows = [
        ("model", atlas.model),
        ("family", atlas.spec.family),
        ("weights", atlas.weights),
        ("input size", "×".join(str(v) for v in atlas.spec.input_size)),
        ("FFN layers", f"{len(atlas.spec.layers)} ({len(summaries)} in this atlas)"),
        ("units", f"{atlas.spec.total_units} ({sum(s.pages for s in summaries)} pages, "
                  f"{sum(s.visualized for s in summaries)} visualized)"),
        ("dataset", atlas.dataset),
        ("images seen", str(ex.images_seen) if ex is not None else "not indexed"),
        ("top-k", str(cfg.get("topk", "–"))),
        ("recipe", f"{cfg.get('recipe', '–')}"
                   + (f", {cfg['steps']} steps" if cfg.get("steps") not in (None, 1)
                      else ", 1 step" if cfg.get("steps") == 1 else "")),
        ("atlas version", atlas.atlas_version),
    ]
    return rows


def model_page(atlas: AtlasView, summaries: list[LayerSummary]) -> str:
    """Facts about the model and run, then one strip of top units per layer, early to late."""
    here = urls.model_dir(atlas.slug)
    facts = "".join(f"<tr><th>{text(k)}</th><td>{text(v)}</td></tr>"
                    for k, v in model_facts(atlas, summaries))
    rows = []
    for s in summaries:
        label = (f'<a class="atlas-strip-label" href="{s.layer}/">Layer {s.layer}'
                 f'<small>{text(s.module)} · stage {s.stage} · {s.grid[0]}×{s.grid[1]} · '
                 f'{s.units} units</small></a>')
        strip = _strip(atlas.slug, s, here, STRIP, 80)
        rows.append(f'<div class="atlas-strip-row">{label}'
                    f'<div class="atlas-strip">{strip}</div></div>')
    return (
        front_matter({"title": atlas.slug, "model": atlas.slug})
        + f'\n<table class="atlas-facts-table">{facts}</table>\n\n'
        + "## Layers, early to late\n\n"
        + "Each row shows the layer's units with the highest dataset activation "
          "(or visualization objective when the layer has no dataset index).\n\n"
        + '<div class="atlas-strips" data-search-exclude>\n' + "\n".join(rows) + "\n</div>\n"
    )


def home_section(atlas: AtlasView, summaries: list[LayerSummary]) -> str:
    """The home page's model card: one representative feature per layer."""
    slug = atlas.slug
    cells = []
    for s in summaries:
        if not s.representatives:
            continue
        unit, thumb = s.representatives[0]
        fdir = urls.feature_dir(slug, s.layer, unit)
        src = f"{fdir}/{thumb}" if thumb else None
        cells.append(f'<figure>{_thumb(fdir + "/", src, f"layer {s.layer} unit {unit}", 72)}'
                     f"<figcaption>L{s.layer}</figcaption></figure>")
    visualized = sum(s.visualized for s in summaries)
    return (
        f'<div class="atlas-model-card">\n'
        f'<h3><a href="{attr(slug)}/">{text(atlas.model)}</a></h3>\n'
        f'<p>weights <code>{text(atlas.weights)}</code> · {len(summaries)} FFN layers · '
        f'{sum(s.pages for s in summaries)} features ({visualized} visualized) · '
        f'dataset {text(atlas.dataset)}</p>\n'
        f'<div class="atlas-strip atlas-home-strip" data-search-exclude>{"".join(cells)}</div>\n'
        f"</div>\n"
    )
