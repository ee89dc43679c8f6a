"""Static search indexes the browser fetches (relative URLs, no server):

- ``models.json`` at the site root: every model's layers and which units have pages, for the
  ``layer/unit`` jump box on every page;
- ``<slug>/classes.json``: for every dataset class, the units that rank it among their top
  classes (by mean activation over the class), for "find units by class name".
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pipeline.pages.data import AtlasView, LayerView
from pipeline.pages.overview import LayerSummary
from pipeline.pages.urls import SITE_FORMAT_VERSION


def models_index(atlases: list[tuple[AtlasView, list[LayerSummary], dict[int, list[int]]]]
                 ) -> dict[str, Any]:
    """The jump index: per model, per layer, the unit count and (if sparse) the paged units."""
    models = []
    for atlas, summaries, units_by_layer in atlases:
        layers = []
        for s in summaries:
            units = units_by_layer[s.layer]
            dense = units == list(range(s.units))
            layers.append({"layer": s.layer, "module": s.module, "units": s.units,
                           "pages": None if dense else units})
        models.append({"name": atlas.model, "slug": atlas.slug, "weights": atlas.weights,
                       "layers": layers,
                       "classes": None if atlas.examples is None
                       or atlas.examples.class_names is None else f"{atlas.slug}/classes.json"})
    return {"format_version": SITE_FORMAT_VERSION, "models": models}


class ClassIndex:
    """Accumulates ``class -> [(layer, unit, mean)]`` over layers."""

    def __init__(self, class_names: list[str] | None):
        self.names = class_names or []
        self.units: dict[int, list[tuple[float, int, int]]] = defaultdict(list)

    def entries(self, view: LayerView) -> list[tuple[int, float, int, int]]:
        """``(class, mean, layer, unit)`` for every top class of every unit of ``view``."""
        idx = view.index
        if idx is None or not self.names:
            return []
        return [(int(c), float(mean), view.layer, unit) for unit in view.units
                for c, mean in zip(idx.top_classes[unit], idx.top_class_means[unit], strict=True)
                if 0 <= c < len(self.names)]

    def extend(self, entries: list[tuple[int, float, int, int]]) -> None:
        for c, mean, layer, unit in entries:
            self.units[c].append((mean, layer, unit))

    def to_json(self) -> dict[str, Any]:
        """``{"classes": [name], "units": [[layer, unit, ...] per class, best first]}``."""
        units = []
        for c in range(len(self.names)):
            ranked = sorted(self.units.get(c, []), key=lambda t: -t[0])
            units.append([v for _, layer, unit in ranked for v in (layer, unit)])
        return {"format_version": SITE_FORMAT_VERSION, "classes": self.names, "units": units}
