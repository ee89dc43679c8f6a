"""The paper's findings, measured for one model: ``<slug>/findings/`` and ``findings.json``.

Per layer (FFN layers, then key/query/value layers where the atlas has them), from the dataset
index alone (and, with masks, the foreground figures and the masking experiment the index
measured): how uniform the units' patch maps are on their top examples (normalized entropy
of the positive activation, 1 = uniform: the paper says maps localize up to the last layer,
where they become uniform) and how pure in class their top examples are (the share of the
most common class: the paper's progressive specialization, objects late). Each figure has
one sentence of what it means, and the page says where a finding holds for this model.
"""

from __future__ import annotations

import html
from collections import Counter
from typing import Any

import numpy as np

from pipeline.index.foreground import atlas_foreground, normalized_entropy
from pipeline.index.results import load_examples, load_layer_index
from pipeline.models.spec import ModelSpec
from pipeline.store import AtlasStore

FINDINGS_VERSION = 1
MEANING = {
    "entropy": "Normalized entropy of a unit's positive patch activation on its top examples, "
               "averaged over units: 1 means the activation is spread evenly over the image, "
               "lower means it sits on a few patches (a saliency-like map).",
    "foreground": "Share of a unit's positive patch activation on object patches of its top "
                  "examples, averaged over units, against the object's share of the image "
                  "(area, chance level): above the area means units fire on the object.",
    "masking": "A unit's mean activation on its top examples with the background (bg masked), "
               "then the object (fg masked), replaced by the image's mean colour, relative "
               "to unmasked, averaged over units: 1 means the unit does not need that part "
               "of the image, lower means it does.",
    "purity": "Share of a unit's top examples that belong to their most common class, averaged "
              "over units: high means units pick out one kind of object.",
}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def measure(store: AtlasStore, spec: ModelSpec) -> dict[str, Any]:
    """``findings.json``: per indexed layer its kind, block, entropy and purity (None where
    not measurable), and the findings in words (``verdicts``)."""
    examples = load_examples(store)
    layers = []
    for layer in spec.layers:
        index = load_layer_index(store, layer.index)
        if index is None:
            continue
        entropies, purities = [], []
        for row in range(index.top_ids.shape[0]):
            ids = [int(i) for i in index.top_ids[row] if i >= 0]
            ents = [e for j in range(len(ids))
                    if (e := normalized_entropy(index.maps[row, j])) is not None]
            if ents:
                entropies.append(float(np.mean(ents)))
            labels = [examples.labels[i] for i in ids] if examples is not None else []
            labels = [c for c in labels if c is not None]
            if labels:
                purities.append(Counter(labels).most_common(1)[0][1] / len(labels))
        fg = atlas_foreground(store, layer, index, examples.ids if examples else [])
        masked = [f for f in fg or [] if f.background_masked is not None]
        fg = [f for f in fg or [] if f.examples]
        layers.append({"layer": layer.index, "kind": layer.kind, "depth": layer.level,
                       "module": layer.module, "units": len(index.top_ids),
                       "entropy": _mean(entropies), "purity": _mean(purities),
                       "foreground": _mean([f.share for f in fg]),
                       "area": _mean([f.area for f in fg]),
                       "background_masked": _mean([f.background_masked for f in masked]),
                       "foreground_masked": _mean([f.foreground_masked for f in masked
                                                   if f.foreground_masked is not None])})
    return {"format_version": FINDINGS_VERSION, "model": spec.name, "layers": layers,
            "meaning": MEANING, "verdicts": verdicts(layers)}


MARGIN = 0.02  # a finding holds or fails only by more than this; closer is "not clear"


def _verdict(gap: float) -> str:
    return "Holds" if gap > MARGIN else ("Does not hold" if gap < -MARGIN else "Not clear")


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
        holds = ent[-1] > before
        out.append(f"{_verdict(ent[-1] - before)}: the last FFN layer's maps are "
                   f"{'more' if holds else 'not more'} uniform than the earlier layers' "
                   f"({ent[-1]:.2f} against {before:.2f} before).")
    pur = [x["purity"] for x in ffn if x["purity"] is not None]
    if len(pur) >= 2:
        holds = pur[-1] > pur[0]
        out.append(f"{_verdict(pur[-1] - pur[0])}: class purity of top examples "
                   f"{'grows' if holds else 'does not grow'} from the first FFN layer to the "
                   f"last ({pur[0]:.2f} to {pur[-1]:.2f}).")
    fg = [(x["foreground"], x["area"]) for x in ffn if x.get("foreground") is not None]
    if fg:
        share, area = float(np.mean([s for s, _ in fg])), float(np.mean([a for _, a in fg]))
        holds = share > area
        out.append(f"{_verdict(share - area)}: FFN units put "
                   f"{'more' if holds else 'no more'} of their activation on the object than "
                   f"its area ({share:.2f} against {area:.2f}).")
    mask = [(x["background_masked"], x.get("foreground_masked")) for x in ffn
            if x.get("background_masked") is not None]
    if mask:
        bg = float(np.mean([b for b, _ in mask]))
        fgs = [f for _, f in mask if f is not None]
        also = f" (masking the object leaves {np.mean(fgs):.2f})" if fgs else ""
        out.append(f"{_verdict(1 - bg)}: FFN units {'use' if bg < 1 else 'do not need'} the "
                   f"background: masking it leaves {bg:.2f} of their activation on their top "
                   f"examples{also}.")
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
    lines += ["", "| layer | kind | block | module | units | entropy | purity | foreground | "
              "area | bg masked | fg masked |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for x in findings["layers"]:
        lines.append(f"| {x['layer']} | {x['kind']} | {x['depth']} | "
                     f"`{html.escape(x['module'])}` | {x['units']} | {_cell(x['entropy'])} | "
                     f"{_cell(x['purity'])} | {_cell(x.get('foreground'))} | "
                     f"{_cell(x.get('area'))} | {_cell(x.get('background_masked'))} | "
                     f"{_cell(x.get('foreground_masked'))} |")
    lines += [""] + [f"**{k}**: {html.escape(v)}" + "\n" for k, v in findings["meaning"].items()]
    return "\n".join(lines) + "\n"
