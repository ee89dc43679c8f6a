"""Reading an atlas from Python: an atlas directory, a built (exported) site folder, or a
published site on disk or at an HTTP(S) URL.

``open(path)`` gives an ``Atlas`` whose ``feature(layer, unit)`` is the record that the
feature's ``feature.json`` holds (schema: the site's Data format page) with its patch maps
decoded (nested lists of floats, ``numpy.asarray`` makes arrays of them), and whose ``table()``
is the model's Parquet export (``<slug>/features.parquet``). On an atlas directory both are
made by the same code that writes them (``site.feature``, ``site.export``); on a site they are
read from its files, wherever they live (``pipeline.location``: a folder, or a URL read in
byte ranges).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import AtlasError
from pipeline.http_location import HttpLocation
from pipeline.location import LocalFolder, Location, is_url
from pipeline.store import AtlasStore

if TYPE_CHECKING:
    import pyarrow as pa


class Atlas:
    """One model's atlas: ``model``, ``layers``, ``units(layer)``, ``feature(layer, unit)``."""

    def __init__(self, path: Path | str, model: str, layers: dict[int, list[int]]):
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
        at ``<model>/<kind>/<depth>/<unit>/`` (``pipeline.site.urls``).

        Its patch maps (``top["maps"]``, ``quantiles["examples"]["maps"]``), which the file
        holds quantized to a byte with their scale, come decoded as nested lists of floats
        ``[example][row][col]`` (``pipeline.site.assets.decode_record``), within half a
        quantization step of the atlas's maps; ``numpy.asarray(record["top"]["maps"])`` is
        an ``(examples, rows, cols)`` array."""
        from pipeline.site.assets import decode_record

        if unit not in self.units(layer):
            raise KeyError(f"{self.model} layer {layer} has no unit {unit} here")
        return decode_record(self._record(layer, unit))

    def table(self, columns: list[str] | None = None, filters: Any = None) -> pa.Table:
        """The model's Parquet export as a ``pyarrow.Table`` (``.to_pandas()`` for a
        DataFrame): a row per feature page, the columns of ``pipeline.site.export.SCHEMA``.
        ``columns``: only these; ``filters``: pyarrow's (``[("layer", "==", 3)]``, or an
        expression). Over HTTP only the byte ranges of the columns and row groups (consecutive
        units of a layer, ``export.ROW_GROUP`` at most) that these ask for are fetched, and
        the footer. On an atlas directory the rows are made from its records, as the site
        build makes them.

        >>> from pipeline.testing.fake import make_fake_atlas, tiny_spec
        >>> import tempfile
        >>> spec = tiny_spec(img_size=32, patch_size=8, depth=2, embed_dim=8, num_heads=1)
        >>> atlas = open(make_fake_atlas(tempfile.mkdtemp(), spec).root)
        >>> atlas.table(["layer", "unit"], [("layer", "==", 1)]).to_pandas().shape
        (32, 2)
        """
        return self._table(list(columns) if columns is not None else None, filters)

    def _record(self, layer: int, unit: int) -> dict[str, Any]:
        raise NotImplementedError

    def _table(self, columns: list[str] | None, filters: Any) -> pa.Table:
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
                                                 self.view.examples, self.view.thumbnails)
        return self._writers[layer].record(unit)

    def _table(self, columns: list[str] | None, filters: Any) -> pa.Table:
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        from pipeline.site.export import feature_row, feature_table

        table = feature_table([feature_row(self.feature(layer, unit))
                               for layer in self.layers for unit in self.units(layer)])
        if filters is not None and not isinstance(filters, ds.Expression):
            filters = pq.filters_to_expression(filters)
        return ds.dataset(table).to_table(columns=columns, filter=filters)


class _SiteAtlas(Atlas):
    def __init__(self, files: Location, entry: dict[str, Any]):
        from pipeline.site import urls

        self.files, self.slug = files, entry["slug"]
        self.root = files.path if isinstance(files, LocalFolder) else files.address()
        units = {}
        self._layers: dict[int, urls.LayerRef] = {}
        for layer in entry["layers"]:
            pages = layer.get("pages")
            units[layer["layer"]] = list(range(layer["units"])) if pages is None else pages
            # models.json before format 8 has no kind: every page at <slug>/<layer>/<unit>/
            self._layers[layer["layer"]] = urls.LayerRef(layer["layer"], layer.get("kind", "ffn"),
                                                         layer.get("depth"))
        super().__init__(self.root, entry["name"], units)

    def _record(self, layer: int, unit: int) -> dict[str, Any]:
        from pipeline.site import urls

        where = f"{urls.feature_dir(self.slug, self._layers[layer], unit)}/{urls.FEATURE_JSON}"
        record = self.files.read_json(where)
        if record is None:
            raise AtlasError(f"{self.files.address(where)} is missing: the site lists "
                             f"{self.model} layer {layer} unit {unit} but has no record of it")
        return record

    def _table(self, columns: list[str] | None, filters: Any) -> pa.Table:
        import pyarrow.parquet as pq

        from pipeline.site import urls

        where = urls.export_file(self.slug)
        try:
            with self.files.open(where) as f:
                return pq.read_table(f, columns=columns, filters=filters)
        except FileNotFoundError:
            raise AtlasError(f"{self.files.address(where)} is missing: this site has no "
                             "Parquet export (sites before format 5 have none)") from None


def _site(files: Location) -> tuple[Location, Any]:
    """The folder of ``files`` that holds ``models.json``, and what it holds: a built site (or
    ``DIR/site``), a version of a publishing root, the root's newest version, or the version
    an alias names in the root's ``versions.json`` (a redirect alias holds no data files)."""
    from pipeline.publish import VERSIONS_JSON, check_versions, resolve_version
    from pipeline.site import urls

    versions = files.read_json(VERSIONS_JSON)
    if versions is not None:  # a publishing root: its newest version
        versions = check_versions(versions, files.address(VERSIONS_JSON))
        if not versions:
            raise AtlasError(f"{files.address(VERSIONS_JSON)} lists no version")
        files = files.child(versions[0]["version"])
    for site in (files, files.child("site")):
        if (index := site.read_json(urls.MODELS_JSON)) is not None:
            return site, index
    up = files.parent()
    versions = up.read_json(VERSIONS_JSON) if up is not None else None
    if up is not None and versions is not None:
        version = resolve_version(check_versions(versions, up.address(VERSIONS_JSON)),
                                  files.name)
        if version is not None and version != files.name:
            return _site(up.child(version))
    raise AtlasError(f"{files.address()} is not a published atlas: neither an atlas directory "
                     f"(atlas.json) nor a built site ({urls.MODELS_JSON}), nor a version or "
                     f"alias listed in a {VERSIONS_JSON}")


def open(path: str | Path, model: str | None = None) -> Atlas:  # noqa: A001 - the API's name
    """An atlas directory (``--out DIR``), a built site folder (``DIR/site``, or an exported
    one), one version of a published site (``SITE/1.0``), an alias of one (``SITE/latest``,
    in any of its forms) or a publishing root (its newest version); ``model`` (name or page
    slug) picks one when a site holds several. Each of these but an atlas directory may also
    be an ``http://`` or ``https://`` URL of a published site: its files are fetched as they
    are read, nothing before (``pipeline.http_location``).

    >>> from pipeline.testing.fake import make_fake_atlas, tiny_spec
    >>> import tempfile
    >>> spec = tiny_spec(img_size=32, patch_size=8, depth=1, embed_dim=8, num_heads=1)
    >>> atlas = open(make_fake_atlas(tempfile.mkdtemp(), spec).root)
    >>> atlas.feature(0, 1)["unit"], atlas.layers, len(atlas.units(0))
    (1, [0], 32)

    A published site over HTTP (here served from this machine):

    >>> from pipeline.publish import publish
    >>> from pipeline.site import serving
    >>> version = publish([atlas.path], tempfile.mkdtemp() + "/site", "1.0", workers=1)
    >>> with serving(version.parent) as base:
    ...     online = open(base + "/")  # the publishing root: its newest version, 1.0
    ...     online.feature(0, 1) == open(version).feature(0, 1), online.layers
    (True, [0])
    """
    if is_url(path):
        files: Location = HttpLocation(str(path))
    else:
        store = AtlasStore(Path(path))
        if store.exists():
            return _DirectoryAtlas(store)
        files = LocalFolder(Path(path))
    return _choose(*_site(files), model)


def _choose(files: Location, index: Any, model: str | None) -> _SiteAtlas:
    """The site atlas of ``model`` (name or slug; the only one if ``None``) in ``files``, whose
    ``models.json`` is ``index``."""
    from pipeline.site import urls

    where = files.address(urls.MODELS_JSON)
    if not isinstance(index, dict) or not isinstance(index.get("models"), list):
        raise AtlasError(f"{where} is not a site's {urls.MODELS_JSON} (no \"models\" list)")
    entries = index["models"]
    names = [e["name"] for e in entries]
    if model is None and len(entries) > 1:
        raise AtlasError(f"{where} holds several models ({', '.join(names)}): pass model=")
    chosen = entries[0] if model is None and entries else next(
        (e for e in entries if model in (e["name"], e["slug"])), None)
    if chosen is None:
        raise AtlasError(f"{where} has no model {model!r} (it has: {', '.join(names) or 'none'})")
    return _SiteAtlas(files, chosen)
