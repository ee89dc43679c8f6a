"""The paper's findings, measured for one model: ``<slug>/findings/`` and ``findings.json``.

Per layer (FFN layers, then key/query/value layers where the atlas has them), from the dataset
index alone (and, with masks, the foreground figures and the masking experiment the index
measured): how uniform the units' patch maps are on their top examples (normalized entropy
of the positive activation, 1 = uniform: the paper says maps localize up to the last layer,
where they become uniform) and how pure in class their top examples are (the share of the
most common class: the paper's progressive specialization, objects late). Per layer also how
recognisable its units' visualizations are (the judge's 2-AFC where the visualize stage
measured it, else the activation against the best dataset example), compared per block
between FFN units and key/query/value channels, with a sample side by side (the paper's
Figure 1). From the index stage's experiments (``experiments.json``): the classifier's
accuracy with the background or the foreground masked, and the change of the output when the
CLS token's state is replaced by its mean at each block. Each figure has one sentence of what
it means, and the page says where a finding holds for this model.
"""

from __future__ import annotations

import html
from collections import Counter
from typing import Any

import numpy as np

from pipeline.index.foreground import atlas_foreground, normalized_entropies
from pipeline.index.results import load_examples, load_layer_index
from pipeline.models.spec import ModelSpec
from pipeline.site import urls
from pipeline.store import AtlasStore

# 1: entropy, purity, foreground, masking per layer; 2: recognisability per layer, by_depth,
# sample, classifier and cls; 3: masking ratios as the median over units; 4: the sample shows
# each kind's median unit, not its best
FINDINGS_VERSION = 4
_ROWS = 64  # units whose maps are measured at once (a few float64 copies of 64 x k x patches)
SAMPLE_DEPTHS = 3  # blocks shown side by side: the first, the middle and the last compared
MEANING = {
    "entropy": "Normalized entropy of a unit's positive patch activation on its top examples, "
               "averaged over units: 1 means the activation is spread evenly over the image, "
               "lower means it sits on a few patches (a saliency-like map).",
    "foreground": "Share of a unit's positive patch activation on object patches of its top "
                  "examples, averaged over units, against the object's share of the image "
                  "(area, chance level): above the area means units fire on the object.",
    "masking": "A unit's mean activation on its top examples with the background (bg masked), "
               "then the object (fg masked), replaced by the image's mean colour, relative "
               "to unmasked, the median over units (a unit whose activation is near zero "
               "gives a ratio far off): 1 means the unit does not need that part of the "
               "image, lower means it does.",
    "purity": "Share of a unit's top examples that belong to their most common class, averaged "
              "over units: high means units pick out one kind of object.",
    "recognisability": "How well a unit's visualization shows what the unit detects, averaged "
                       "over the layer's visualized units: the judge's 2-AFC (afc, 0.5 = "
                       "chance) where it was measured, else the image's activation against the "
                       "unit's best dataset example (vs best, above 1 = stronger than any "
                       "dataset image); by block, FFN units against key/query/value channels.",
    "classifier": "The model's top-1 accuracy against the dataset labels on examples with a "
                  "mask, unmasked, with the background and with the object replaced by the "
                  "image's mean colour: a small drop without the background means the model "
                  "does not rely on it.",
    "cls": "Per block, the change of the model's output when the CLS token's state after "
           "that block is replaced by its mean over the dataset: mean KL divergence of the "
           "class distributions and the share of examples keeping their top-1 class (1 = "
           "unchanged: the CLS token carries nothing there yet). The finding holds where "
           "every block before the last keeps at least 0.9 and the last does not.",
}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _median(values: list[float]) -> float | None:
    """The median: a ratio to a unit's unmasked activation runs far off for a unit whose
    activation is near zero (one unit of the demo's layer 0 at -95), and would swamp a mean."""
    return float(np.median(values)) if values else None


def _vis_figures(store: AtlasStore, layer: int, steps: set[int] | None = None
                 ) -> dict[int, tuple[float | None, float | None]]:
    """``{unit: (2-AFC or None, vs_best_example or None)}`` of the primary recipe's
    visualizations of ``layer``; adds their recipes' optimization steps to ``steps``."""
    recipes = store.vis_recipes()
    if not recipes:
        return {}
    out = {}
    for unit, r in store.vis_results(layer, recipes[0], lazy=True).items():
        if steps is not None and isinstance((r.get("recipe") or {}).get("steps"), int):
            steps.add(r["recipe"]["steps"])
        fid = r.get("fidelity") or {}
        rec = fid.get("recognisability") or {}
        afc, vs = rec.get("afc"), fid.get("vs_best_example")
        out[int(unit)] = (float(afc) if isinstance(afc, (int, float)) else None,
                          float(vs) if isinstance(vs, (int, float)) else None)
    return out


def measure(store: AtlasStore, spec: ModelSpec, slug: str | None = None) -> dict[str, Any]:
    """``findings.json``: per indexed layer its kind, block, entropy, purity, foreground,
    masking and recognisability figures (None where not measurable), FFN against the other
    kinds per block (``by_depth``) with a ``sample`` side by side (site paths under
    ``slug``), the index's experiments (``classifier``, ``cls``) and the findings in words
    (``verdicts``)."""
    examples = load_examples(store)
    layers = []
    vis: dict[int, dict[int, tuple[float | None, float | None]]] = {}
    steps: set[int] = set()  # the visualizations' optimization steps
    for layer in spec.layers:
        index = None  # the last layer's let go first: one layer's index in memory at a time
        index = load_layer_index(store, layer.index)
        if index is None:
            continue
        entropies, purities = [], []
        filled = (np.asarray(index.top_ids) >= 0).sum(axis=1)
        for start in range(0, len(filled), _ROWS):  # a block of units' maps at a time
            block = normalized_entropies(index.maps[start:start + _ROWS])
            for row, ents in enumerate(block, start):
                ents = ents[:filled[row]]  # the filled slots' maps
                ents = ents[~np.isnan(ents)]
                if len(ents):
                    entropies.append(float(np.mean(ents)))
        for row in range(index.top_ids.shape[0]):
            ids = [int(i) for i in index.top_ids[row] if i >= 0]
            labels = [examples.labels[i] for i in ids] if examples is not None else []
            labels = [c for c in labels if c is not None]
            if labels:
                purities.append(Counter(labels).most_common(1)[0][1] / len(labels))
        vis[layer.index] = figs = _vis_figures(store, layer.index, steps)
        fg = atlas_foreground(store, layer, index, examples.ids if examples else [])
        masked = [f for f in fg or [] if f.background_masked is not None]
        fg = [f for f in fg or [] if f.examples]
        layers.append({"layer": layer.index, "kind": layer.kind, "depth": layer.level,
                       "module": layer.module, "units": len(index.top_ids),
                       "entropy": _mean(entropies), "purity": _mean(purities),
                       "foreground": _mean([f.share for f in fg]),
                       "area": _mean([f.area for f in fg]),
                       "background_masked": _median([f.background_masked for f in masked]),
                       "foreground_masked": _median([f.foreground_masked for f in masked
                                                     if f.foreground_masked is not None]),
                       "visualized": len(figs),
                       "afc": _mean([a for a, _ in figs.values() if a is not None]),
                       "vs_best_example": _mean([v for _, v in figs.values() if v is not None])})
    by_depth, figure = compare_kinds(layers)
    sample = _sample(spec, vis, figure, slug)
    experiments = store.experiments() or {}
    found = {"format_version": FINDINGS_VERSION, "model": spec.name, "layers": layers,
             "by_depth": by_depth, "recognisability_figure": figure, "sample": sample,
             "vis_steps": sorted(steps),
             "classifier": experiments.get("classifier"), "cls": experiments.get("cls"),
             "meaning": MEANING, "slug": slug}
    found["verdicts"] = verdicts(layers) + model_verdicts(found)
    return found


def compare_kinds(layers: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
    """Per block that has FFN units and another kind visualized: each kind's mean figure, and
    the figure used: ``afc`` when every such layer has the judge's 2-AFC, else
    ``vs_best_example`` (None: nothing to compare).

    >>> rows, fig = compare_kinds([
    ...     {"kind": "ffn", "depth": 0, "afc": 0.8, "vs_best_example": 1.2},
    ...     {"kind": "key", "depth": 0, "afc": 0.55, "vs_best_example": 0.4},
    ...     {"kind": "key", "depth": 1, "afc": 0.6, "vs_best_example": 0.5}])
    >>> fig, rows
    ('afc', [{'depth': 0, 'ffn': 0.8, 'key': 0.55}])
    """
    def has(x: dict[str, Any], name: str) -> bool:
        return x.get(name) is not None

    depths: dict[int, dict[str, dict[str, Any]]] = {}
    for x in layers:
        if has(x, "afc") or has(x, "vs_best_example"):
            depths.setdefault(x["depth"], {})[x["kind"]] = x
    both = {d: k for d, k in depths.items() if "ffn" in k and len(k) > 1}
    if not both:
        return [], None
    used = [x for k in both.values() for x in k.values()]
    figure = "afc" if all(has(x, "afc") for x in used) else "vs_best_example"
    if figure == "vs_best_example" and not all(has(x, figure) for x in used):
        return [], None
    rows = [{"depth": d, **{kind: both[d][kind][figure] for kind in KIND_ORDER
                            if kind in both[d]}} for d in sorted(both)]
    return rows, figure


KIND_ORDER = ("ffn", "query", "key", "value")


def _sample(spec: ModelSpec, vis: dict[int, dict[int, tuple[float | None, float | None]]],
            figure: str | None, slug: str | None) -> list[dict[str, Any]]:
    """The paper's Figure 1 for this model: for up to ``SAMPLE_DEPTHS`` blocks (the first, the
    middle, the last that have FFN and other kinds visualized), per kind its typical unit: the
    one at the median of its figure (the lower middle; ties: the lowest unit), so that the kinds
    are compared as the per-block means compare them, not by their best units, with its page
    and visualization (site paths)."""
    if figure is None:
        return []
    at = 0 if figure == "afc" else 1
    depths: dict[int, dict[str, Any]] = {}
    for layer in spec.layers:
        got = {u: f[at] for u, f in vis.get(layer.index, {}).items() if f[at] is not None}
        if got:
            depths.setdefault(layer.level, {})[layer.kind] = (layer, got)
    both = sorted(d for d, k in depths.items() if "ffn" in k and len(k) > 1)
    if len(both) > SAMPLE_DEPTHS:
        picks = np.linspace(0, len(both) - 1, SAMPLE_DEPTHS).round().astype(int)
        both = [both[i] for i in sorted(set(picks.tolist()))]
    out = []
    for d in both:
        units = []
        for kind in KIND_ORDER:
            if kind not in depths[d]:
                continue
            layer, got = depths[d][kind]
            ranked = sorted(got, key=lambda u: (got[u], u))
            unit = ranked[(len(ranked) - 1) // 2]
            entry = {"kind": kind, "layer": layer.index, "unit": unit, figure: got[unit]}
            if slug is not None:
                page = urls.feature_dir(slug, layer, unit)
                entry["page"] = page + "/"
                entry["image"] = f"{page}/{urls.VISUALIZATION}"
            units.append(entry)
        out.append({"depth": d, "units": units})
    return out


def model_verdicts(found: dict[str, Any]) -> list[str]:
    """The findings in words from the per-block comparison of kinds and the experiments: FFN
    visualizations more recognisable than key/query/value ones; the classifier needs the
    object more than the background; the CLS token matters only at the end.

    >>> for line in model_verdicts({"by_depth": [{"depth": 0, "ffn": 0.8, "key": 0.6}],
    ...         "recognisability_figure": "afc",
    ...         "classifier": {"examples": 9, "accuracy": 0.9, "background_masked": 0.8,
    ...                        "foreground_masked": 0.3},
    ...         "cls": {"examples": 9, "blocks": [0, 1, 2], "kl": [0.0, 0.1, 2.0],
    ...                 "agreement": [1.0, 0.9, 0.2]}}):
    ...     print(line)  # doctest: +ELLIPSIS
    Holds: FFN units' visualizations are more recognisable than ... (2-AFC 0.80 against 0.60).
    Holds: the classifier loses less without the background (0.90 -> 0.80) than ...
    Holds: the CLS token matters only at the end: ... stays for at least 0.90 of ..., ... 0.20.
    """
    out = []
    rows, figure = found.get("by_depth") or [], found.get("recognisability_figure")
    if rows and figure:
        ffn = float(np.mean([r["ffn"] for r in rows]))
        other = float(np.mean([v for r in rows for k, v in r.items()
                               if k not in ("depth", "ffn")]))
        name = "2-AFC" if figure == "afc" else "activation against the best dataset example"
        verdict, words = _say(ffn - other, "more recognisable than", "not more recognisable "
                              "than", "about as recognisable as")
        steps = found.get("vis_steps") or []
        of = (f"; images of {'/'.join(map(str, steps))} optimization steps" if steps else "")
        out.append(f"{verdict}: FFN units' visualizations are {words} key/query/value "
                   f"channels' of the same blocks ({name} {ffn:.2f} against {other:.2f}{of}).")
    c = found.get("classifier")
    if c:
        bg, fg = c["accuracy"] - c["background_masked"], c["accuracy"] - c["foreground_masked"]
        verdict, words = _say(fg - bg, ("less", "than"), ("no less", "than"),
                              ("about as much", "as"))
        out.append(f"{verdict}: the classifier loses {words[0]} without the background "
                   f"({c['accuracy']:.2f} -> {c['background_masked']:.2f}) {words[1]} without "
                   f"the object ({c['accuracy']:.2f} -> {c['foreground_masked']:.2f}), over "
                   f"{c['examples']} examples.")
    cls = found.get("cls")
    if cls and len(cls["agreement"]) >= 2:
        early, last = cls["agreement"][:-1], cls["agreement"][-1]
        before = [(b, a) for b, a in zip(cls["blocks"], early, strict=False) if a < KEPT]
        if before:  # the output changes before the last block already
            b, a = before[0]
            out.append(f"Does not hold: the CLS token matters before the end: replaced by its "
                       f"mean after block {b}, the top-1 class stays for only {a:.2f} of the "
                       f"examples (after the last block: {last:.2f}).")
        elif last < KEPT:
            out.append(f"Holds: the CLS token matters only at the end: replaced by its mean "
                       f"before the last block, the top-1 class stays for at least "
                       f"{min(early):.2f} of the examples, after the last block for "
                       f"{last:.2f}.")
        else:
            out.append(f"Not clear: replacing the CLS token by its mean changes little at any "
                       f"block: the top-1 class stays for at least {min(cls['agreement']):.2f} "
                       f"of the examples.")
    return out


MARGIN = 0.02  # a finding holds or fails only by more than this; closer is "not clear"
# the CLS token "matters" at a block where replacing it changes the top-1 class of more than
# 1 - KEPT of the examples
KEPT = 0.9


def _verdict(gap: float) -> str:
    return "Holds" if gap > MARGIN else ("Does not hold" if gap < -MARGIN else "Not clear")


def _say(gap: float, holds: Any, fails: Any, unclear: Any) -> tuple[str, Any]:
    """The verdict for ``gap`` and the words that go with it, so that a sentence never says
    "more" where the figures are within ``MARGIN`` of each other.

    >>> _say(0.01, "more", "not more", "about as")
    ('Not clear', 'about as')
    """
    verdict = _verdict(gap)
    return verdict, {"Holds": holds, "Does not hold": fails}.get(verdict, unclear)


def verdicts(layers: list[dict[str, Any]]) -> list[str]:
    """The findings in words, from FFN layers' figures: whether maps become uniform at the
    last layer and whether class purity grows with depth.

    >>> for line in verdicts([{"kind": "ffn", "entropy": 0.6, "purity": 0.3},
    ...                       {"kind": "ffn", "entropy": 0.9, "purity": 0.7}]):
    ...     print(line)  # doctest: +ELLIPSIS
    Holds: the last FFN layer's maps are more uniform ... (0.90 against 0.60 before).
    Holds: class purity of top examples grows ... (0.30 to 0.70).
    """
    ffn = [x for x in layers if x["kind"] == "ffn"]
    out = []
    ent = [x["entropy"] for x in ffn if x["entropy"] is not None]
    if len(ent) >= 2:
        before = float(np.mean(ent[:-1]))
        verdict, words = _say(ent[-1] - before, "more uniform than", "not more uniform than",
                              "about as uniform as")
        out.append(f"{verdict}: the last FFN layer's maps are {words} the earlier layers' "
                   f"({ent[-1]:.2f} against {before:.2f} before).")
    pur = [x["purity"] for x in ffn if x["purity"] is not None]
    if len(pur) >= 2:
        verdict, words = _say(pur[-1] - pur[0], "grows", "does not grow", "barely changes")
        out.append(f"{verdict}: class purity of top examples {words} from the first FFN "
                   f"layer to the last ({pur[0]:.2f} to {pur[-1]:.2f}).")
    fg = [(x["foreground"], x["area"]) for x in ffn if x.get("foreground") is not None]
    if fg:
        share, area = float(np.mean([s for s, _ in fg])), float(np.mean([a for _, a in fg]))
        verdict, words = _say(share - area, ("more", "than"), ("no more", "than"),
                              ("about as much", "as"))
        out.append(f"{verdict}: FFN units put {words[0]} of their activation on the object "
                   f"{words[1]} its area ({share:.2f} against {area:.2f}).")
    mask = [(x["background_masked"], x.get("foreground_masked")) for x in ffn
            if x.get("background_masked") is not None]
    if mask:
        bg = float(np.mean([b for b, _ in mask]))
        fgs = [f for _, f in mask if f is not None]
        also = f" (masking the object leaves {np.mean(fgs):.2f})" if fgs else ""
        verdict, words = _say(1 - bg, "use", "do not need", "barely use")
        out.append(f"{verdict}: FFN units {words} the background: masking it leaves {bg:.2f} "
                   f"of their activation on their top examples{also}.")
    return out


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def findings_page(findings: dict[str, Any]) -> str:
    """The Findings page's Markdown (names escaped).

    >>> print(findings_page({"model": "m<1>", "layers": [], "verdicts": [],
    ...                      "meaning": MEANING}).splitlines()[0])
    # Findings: m&lt;1&gt;
    """
    lines = [f"# Findings: {html.escape(findings['model'])}", "",
             "What the paper (Ghiasi et al. 2022) says of ViTs, measured on this model's "
             "dataset index. The figures are in `findings.json` beside this page.", ""]
    lines += [f"- {html.escape(v)}" for v in findings["verdicts"]] or [
        "- Too few indexed layers to say whether the findings hold."]
    # kind and block name a layer (its number, module and units are in findings.json), and
    # each pair shares a cell: six columns fit the page without scrolling sideways
    lines += ["", "| kind | block | entropy | purity | foreground / area | bg / fg masked |",
              "|---|---|---|---|---|---|"]
    for x in findings["layers"]:
        lines.append(f"| {x['kind']} | {x['depth']} | {_cell(x['entropy'])} | "
                     f"{_cell(x['purity'])} | {_cell(x.get('foreground'))} / "
                     f"{_cell(x.get('area'))} | {_cell(x.get('background_masked'))} / "
                     f"{_cell(x.get('foreground_masked'))} |")
    lines += _recognisability_lines(findings) + _experiment_lines(findings)
    lines += [""] + [f"**{k}**: {html.escape(v)}" + "\n" for k, v in findings["meaning"].items()]
    return "\n".join(lines) + "\n"


def _recognisability_lines(findings: dict[str, Any]) -> list[str]:
    rows, figure = findings.get("by_depth") or [], findings.get("recognisability_figure")
    if not rows or not figure:
        return []
    kinds = [k for k in KIND_ORDER if any(k in r for r in rows)]
    name = "2-AFC" if figure == "afc" else "vs best example"
    lines = ["", "## FFN units against key, query and value channels", "",
             f"Mean {name} of the visualizations, per block"
             + (f" (images of {'/'.join(map(str, findings['vis_steps']))} optimization steps)"
                if findings.get("vis_steps") else "") + ".", "",
             "| block | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for r in rows:
        lines.append(f"| {r['depth']} | " + " | ".join(_cell(r.get(k)) for k in kinds) + " |")
    here = f"{findings.get('slug', '')}/findings"
    sample = [s for s in findings.get("sample") or [] if all("image" in u for u in s["units"])]
    if sample:
        lines += ["", "The paper's Figure 1 for this model: per block, the typical visualized "
                  "unit of each kind (the one at its kind's median figure).", "",
                  '<div class="atlas-findings-sample">']
        for s in sample:
            lines.append(f'<div class="atlas-findings-row"><span>block {s["depth"]}</span>')
            for u in s["units"]:
                page = html.escape(urls.relative(u["page"], here), quote=True)
                img = html.escape(urls.relative(u["image"], here), quote=True)
                lines.append(f'<a href="{page}"><figure><img src="{img}" width="128" '
                             f'height="128" loading="lazy" alt="{u["kind"]} channel {u["unit"]}'
                             f' of block {s["depth"]}"><figcaption>{u["kind"]} {u["unit"]} · '
                             f'{_cell(u.get(figure))}</figcaption></figure></a>')
            lines.append("</div>")
        lines.append("</div>")
    return lines


def _experiment_lines(findings: dict[str, Any]) -> list[str]:
    lines = []
    c = findings.get("classifier")
    if c:
        lines += ["", "## The classifier without background or object", "",
                  "| examples | accuracy | background masked | object masked |",
                  "|---|---|---|---|",
                  f"| {c['examples']} | {_cell(c['accuracy'])} | "
                  f"{_cell(c['background_masked'])} | {_cell(c['foreground_masked'])} |"]
    cls = findings.get("cls")
    if cls:
        lines += ["", "## The CLS token replaced by its mean", "",
                  f"Over {cls['examples']} examples.", "", "| block | KL | top-1 kept |",
                  "|---|---|---|"]
        lines += [f"| {b} | {k:.3f} | {_cell(a)} |" for b, k, a in
                  zip(cls["blocks"], cls["kl"], cls["agreement"], strict=True)]
    return lines
