"""The layer page's grid of every unit: its data, ``units.json`` beside the page, and the
page's own part of it.

``units.json`` (``grid_record``) holds every unit with a page in columns (one list per field,
one entry per unit) so that a layer of 16,384 units is one compact file: ``assets/atlas.js``
fetches it and draws only the tiles in view, and a screen's height above and below, as the
reader scrolls (a virtual grid); filter, sort and the tile switch work on the columns. The page
(``grid_html``) holds the grid's element and, for readers and crawlers without JavaScript, a
plain list of links to every feature page.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pipeline.index.foreground import atlas_foreground
from pipeline.site import fidelity, urls
from pipeline.site.data import ACCENT, AtlasView, LayerView


class GridControls(NamedTuple):
    """Which of the layer page's controls the grid's data can drive."""

    measured: bool  # fidelity was measured: sort by it, "only trusted"
    recognised: bool  # recognisability was measured: its sort and filter
    foreground: bool  # masks: sort by foreground share


def grid_controls(view: LayerView) -> GridControls:
    """What ``grid_record`` of ``view`` will hold, without reading the masks or class names."""
    fids = [f for u in view.units if (f := view.fidelity(u)) is not None]
    index = view.index
    masks = bool(view.store.manifest().get("config", {}).get("masks")) \
        if view.store.exists() else False
    return GridControls(bool(fids), any(f.get("recognisability") for f in fids),
                        index is not None and (getattr(index, "top_foreground", None)
                                               is not None or masks))


def _numbered(names: list[str], table: dict[str, int]) -> list[int]:
    """``names`` as numbers into ``table`` (a name's number: its first appearance).

    >>> t = {}; _numbered(["a", "b"], t), _numbered(["b", "c"], t), list(t)
    ([0, 1], [1, 2], ['a', 'b', 'c'])
    """
    return [table.setdefault(n, len(table)) for n in names]


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)


def grid_record(atlas: AtlasView, view: LayerView) -> dict[str, Any]:
    """``units.json`` beside a layer page: every unit with a page (``units``, ascending) and,
    per unit, in lists of the same length:

    - ``thumb``: its visualization's file name in ``thumbs`` (beside its feature page
      ``<unit>/``), -1 when it has none;
    - with a dataset index: ``top_classes``, its top classes as numbers into ``classes``, and
      ``example``, its best dataset example's thumbnail in the ``examples`` folder (relative to
      the page);
    - when labelled: ``concepts``, its top concepts as numbers into ``words``, best first (the
      first is its label);
    - where fidelity was measured (primary recipe): ``vs_best`` (times the best dataset
      example), ``z_rank`` (``of`` units in the layer) and ``trusted`` (1/0,
      ``fidelity.trusted``); where recognisability was, ``afc`` and ``afc_best`` (its best
      dataset example's 2-AFC);
    - with masks: ``foreground`` (share of positive activation on the objects) and ``area``
      (the objects' share of the image, chance level);
    - with accentuations: ``accented`` (1/0; the file beside its page is ``accent``).

    A field the layer has for no unit is left out; a unit without a value has null.
    """
    s = view.spec
    ex = atlas.examples
    indexed = view.index is not None
    files = urls.recipe_files(atlas.recipes)
    thumbs = [files[r][0] for r in atlas.recipes]
    number = {name: i for i, name in enumerate(thumbs)}
    classes: dict[str, int] = {}
    words: dict[str, int] = {}
    controls = grid_controls(view)
    fg = atlas_foreground(view.store, s, view.index, ex.ids if ex is not None else []) \
        if controls.foreground else None
    cols: dict[str, list] = {k: [] for k in (
        "units", "thumb", "top_classes", "example", "concepts", "vs_best", "z_rank", "trusted",
        "afc", "afc_best", "foreground", "area", "accented")}
    for u in view.units:
        cols["units"].append(u)
        cols["thumb"].append(number.get(view.thumbnail(u) or "", -1))
        cols["top_classes"].append(_numbered(view.top_class_names(u, ex), classes))
        n = view.best_example(u) if indexed and ex is not None else None
        rel = ex.thumbs[n] if n is not None and n < len(ex.thumbs) else None
        cols["example"].append(None if rel is None else f"e{n}{urls.IMAGE_SUFFIX}")
        cols["concepts"].append(_numbered([c["concept"] for c in view.concepts(u)], words))
        fid = view.fidelity(u) or {}
        cols["vs_best"].append(_round(fid.get("vs_best_example")))
        cols["z_rank"].append(fid.get("z_rank"))
        cols["trusted"].append(int(fidelity.trusted(fid)) if fid else 0)
        rec = fid.get("recognisability") or {}
        cols["afc"].append(_round(rec.get("afc")))
        cols["afc_best"].append(_round((rec.get("best_example") or {}).get("afc")))
        f = fg[u] if fg is not None and u < len(fg) else None
        ok = f is not None and f.share is not None and f.area is not None
        cols["foreground"].append(_round(f.share) if ok else None)
        cols["area"].append(_round(f.area) if ok else None)
        cols["accented"].append(int(bool(view.accented and view.accent(u))))
    record: dict[str, Any] = {
        "format_version": urls.SITE_FORMAT_VERSION, "model": atlas.model, "layer": view.layer,
        "kind": s.kind, **({"depth": s.depth} if s.depth is not None else {}),
        "of": s.units, "thumbs": thumbs, "units": cols["units"], "thumb": cols["thumb"],
    }
    if classes:
        record.update(classes=list(classes), top_classes=cols["top_classes"])
    if any(e is not None for e in cols["example"]):
        record.update(examples="../examples/", example=cols["example"])
    if words:
        record.update(words=list(words), concepts=cols["concepts"])
    if controls.measured:
        record.update({k: cols[k] for k in ("vs_best", "z_rank", "trusted")})
    if controls.recognised:
        record.update({k: cols[k] for k in ("afc", "afc_best")})
    if fg is not None:
        record.update({k: cols[k] for k in ("foreground", "area")})
    if view.accented:
        record.update(accent=view.files[ACCENT][0], accented=cols["accented"])
    return record


def grid_html(view: LayerView) -> str:
    """The layer page's grid: an element that ``assets/atlas.js`` fills from ``units.json``
    (``data-src``), holding for readers without JavaScript (and crawlers) a plain list of links
    to every feature page of the layer."""
    links = " ".join(f'<a href="{u}/">{u}</a>' for u in view.units)
    # the preload starts the fetch while the page is parsed, before Material's scripts run;
    # atlas.js's fetch (same URL, mode and credentials) is then answered from it
    return (f'<div class="atlas-grid" data-search-exclude data-src="{urls.UNITS_JSON}" '
            f'data-units="{len(view.units)}">\n'
            f'<link rel="preload" href="{urls.UNITS_JSON}" as="fetch" crossorigin="anonymous">\n'
            f'<noscript><p class="atlas-grid-links">Tiles, filter and sort need JavaScript. '
            f"The {len(view.units):,} units of this layer: {links}</p></noscript>\n</div>\n")
