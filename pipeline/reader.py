"""Reading an atlas from Python: an atlas directory or a built (exported) site folder.

``open(path)`` gives an ``Atlas`` whose ``feature(layer, unit)`` is the record that the
feature's ``feature.json`` holds (schema: the site's Data format page). On an atlas directory
the record is made by the same code that writes ``feature.json`` (``pages.feature``); on a site
folder it is read from the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.errors import AtlasError
from pipeline.store import AtlasStore


class Atlas:
    """One model's atlas: ``model``, ``layers``, ``units(layer)``, ``feature(layer, unit)``."""

    def __init__(self, path: Path, model: str, layers: dict[int, list[int]]):
        self.path, self.model, self._units = path, model, layers

    @property
    def layers(self) -> list[int]:
        """Layers with feature records."""
        return sorted(self._units)

    def units(self, layer: int) -> list[int]:
        """Units of ``layer`` with feature records."""
        if layer not in self._units:
            raise KeyError(f"{self.model} has no layer {layer} here (layers: {self.layers})")
        return list(self._units[layer])

    def feature(self, layer: int, unit: int) -> dict[str, Any]:
        """The ``feature.json`` record of ``unit`` of ``layer``: the atlas's layer number
        (``feature.json``'s ``layer``), for key, query and value channels too, whose pages lie
        at ``<model>/<kind>/<depth>/<unit>/`` (``pipeline.site.urls``)."""
        if unit not in self.units(layer):
            raise KeyError(f"{self.model} layer {layer} has no unit {unit} here")
        return self._record(layer, unit)

    def _record(self, layer: int, unit: int) -> dict[str, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        n = sum(len(u) for u in self._units.values())
        return f"<Atlas {self.model}: {len(self._units)} layers, {n} features at {self.path}>"


class _DirectoryAtlas(Atlas):
    def __init__(self, store: AtlasStore):
        from pipeline.site.data import AtlasView, page_units

        self.view = AtlasView(store)
        units = {layer.index: u for layer in self.view.spec.layers
                 if (u := page_units(store, layer))}
        super().__init__(store.root, self.view.model, units)
        self._writers: dict[int, Any] = {}

    def _record(self, layer: int, unit: int) -> dict[str, Any]:
        from pipeline.site.cite import build_year
        from pipeline.site.feature import FeatureWriter, SiteInfo

        if layer not in self._writers:
            info = SiteInfo.of(self.view, self._units, build_year(), None)
            self._writers[layer] = FeatureWriter(info, self.view.layer(layer),
                                                 self.view.examples)
        return self._writers[layer].record(unit)


class _SiteAtlas(Atlas):
    def __init__(self, root: Path, entry: dict[str, Any]):
        from pipeline.site import urls

        self.root, self.slug = root, entry["slug"]
        units = {}
        self._layers: dict[int, urls.LayerRef] = {}
        for layer in entry["layers"]:
            pages = layer.get("pages")
            units[layer["layer"]] = list(range(layer["units"])) if pages is None else pages
            # models.json before format 8 has no kind: every page at <slug>/<layer>/<unit>/
            self._layers[layer["layer"]] = urls.LayerRef(layer["layer"], layer.get("kind", "ffn"),
                                                         layer.get("depth"))
        super().__init__(root, entry["name"], units)

    def _record(self, layer: int, unit: int) -> dict[str, Any]:
        from pipeline.site import urls

        where = urls.feature_dir(self.slug, self._layers[layer], unit)
        return json.loads((self.root / where / urls.FEATURE_JSON).read_text(encoding="utf-8"))


def open(path: str | Path, model: str | None = None) -> Atlas:  # noqa: A001 - the API's name
    """An atlas directory (``--out DIR``), a built site folder (``DIR/site``, or an exported
    one), one version of a published site (``SITE/1.0``) or a publishing root (its newest
    version); ``model`` (name or page slug) picks one when a site holds several.

    >>> from pipeline.testing.fake import make_fake_atlas, tiny_spec
    >>> import tempfile
    >>> spec = tiny_spec(img_size=32, patch_size=8, depth=1, embed_dim=8, num_heads=1)
    >>> atlas = open(make_fake_atlas(tempfile.mkdtemp(), spec).root)
    >>> atlas.feature(0, 1)["unit"], atlas.layers, len(atlas.units(0))
    (1, [0], 32)
    """
    from pipeline.site import urls

    path = Path(path)
    store = AtlasStore(path)
    if store.exists():
        return _DirectoryAtlas(store)
    from pipeline.publish import read_versions

    versions = read_versions(path)
    if versions:  # a publishing root: its newest version
        path = path / versions[0]["version"]
    index = path / urls.MODELS_JSON
    if not index.is_file() and (path / "site" / urls.MODELS_JSON).is_file():
        index = path / "site" / urls.MODELS_JSON
    if not index.is_file():
        raise AtlasError(f"{path} is neither an atlas directory (atlas.json) nor a built site "
                         f"({urls.MODELS_JSON})")
    entries = json.loads(index.read_text(encoding="utf-8"))["models"]
    names = [e["name"] for e in entries]
    if model is None and len(entries) > 1:
        raise AtlasError(f"{path} holds several models ({', '.join(names)}): pass model=")
    chosen = entries[0] if model is None else next(
        (e for e in entries if model in (e["name"], e["slug"])), None)
    if chosen is None:
        raise AtlasError(f"{path} has no model {model!r} (it has: {', '.join(names)})")
    return _SiteAtlas(index.parent, chosen)
