"""The site stage: atlases → Markdown in a docs folder → mkdocs → a site folder.

One atlas (``vit-atlas site``): ``DIR/build/docs`` → ``DIR/site``. Several (``publish``): one
site with every model's pages, a home page of model cards and a cross-model view, built as
one published version (``SiteVersion``) into a folder of its own.

mkdocs is single-threaded, so it gets only the pages that are not feature pages; every CPU
renders the rest, in worker processes:

1. the workers write each layer's page as Markdown, and meanwhile begin on each feature's
   ``feature.json``, its visualizations and the dataset thumbnails (AVIF, straight into the
   output);
2. this process writes the model and home pages and runs mkdocs; once mkdocs' environment is
   ready, it renders each layer's feature-page shell (``pages``), and the workers render the
   feature pages into it, through the same templates, as mkdocs would have (checked);
3. each layer's rows of the Parquet export are written as its task ends, so memory does not
   grow with the pages.

mkdocs builds into a fresh temporary directory (``dirty=True`` only stops it from cleaning
that directory under the workers' feet); the previous site is replaced only when all is done.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import logging
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from pipeline.errors import AtlasError
from pipeline.resources import handbook_dir, mkdocs_yml
from pipeline.site import export, findings, notfound, pages, sitemap, theme_files, urls
from pipeline.site.assets import link_display, write_display, write_new
from pipeline.site.cite import build_year
from pipeline.site.data import AtlasView, compact_units, page_units
from pipeline.site.feature import (
    FeatureWriter,
    SiteInfo,
    example_path,
    site_extra,
)
from pipeline.site.grid import grid_record
from pipeline.site.markup import compact_json
from pipeline.site.overview import (
    LayerSummary,
    compare_page,
    home_section,
    layer_page,
    map_record,
    model_page,
    words_page,
)
from pipeline.site.search import (
    ClassIndex,
    Run,
    WordIndex,
    models_index,
    search_hint,
)
from pipeline.store import AtlasStore, atomic_file, atomic_write_bytes

if TYPE_CHECKING:
    import pyarrow as pa
    from mkdocs.config.defaults import MkDocsConfig

MODELS_MARKER = "<!-- atlas:models -->"
log = logging.getLogger(__name__)


class DocsWriter:
    """Writes the mkdocs sources, skipping unchanged files and pruning stale ones."""

    def __init__(self, root: Path):
        self.root = root
        self.written: set[str] = set()

    def write(self, rel: str, content: str | bytes) -> None:
        data = content.encode("utf-8") if isinstance(content, str) else content
        path = self.root / rel
        self.written.add(rel)
        try:
            if path.read_bytes() == data:
                return
        except OSError:
            pass
        atomic_write_bytes(path, data)

    def prune(self) -> None:
        for dirpath, _, filenames in os.walk(self.root, topdown=False):
            for name in filenames:
                path = Path(dirpath, name)
                if path.relative_to(self.root).as_posix() not in self.written:
                    path.unlink()
            if not os.listdir(dirpath) and Path(dirpath) != self.root:
                os.rmdir(dirpath)


def _handbook(docs: DocsWriter, home_cards: str) -> None:
    """Copy the hand-written pages and assets, composing the home page with the model cards."""
    handbook = handbook_dir()
    for path in sorted(handbook.rglob("*")):
        rel = path.relative_to(handbook).as_posix()
        if path.is_dir() or rel.startswith("overrides/"):
            continue
        data = path.read_bytes()
        if rel == "index.md":
            data = data.decode("utf-8").replace(MODELS_MARKER, home_cards).encode("utf-8")
        docs.write(rel, data)


@dataclass(frozen=True)
class SiteVersion:
    """The published version a site is built as (``publish``).

    ``name``: the version (``1.0``), the folder it lives in under the site root;
    ``root_url``: absolute URL of the site root (the folder with ``versions.json``), or None.
    Permalinks name the version: ``<root_url>/<name>/<slug>/<layer>/<unit>/``.
    """

    name: str
    root_url: str | None = None

    @property
    def base_url(self) -> str | None:
        """The absolute URL of this version's pages, or None without ``root_url``."""
        return None if self.root_url is None else f"{self.root_url.rstrip('/')}/{self.name}/"


# -- worker processes: one layer's Markdown, or its feature.json and images ----------------
_ATLAS: dict[str, AtlasView] = {}


def _atlas(root: str) -> AtlasView:
    if root not in _ATLAS:
        _ATLAS.clear()
        _ATLAS[root] = AtlasView(AtlasStore(root))
    return _ATLAS[root]


def _layer_files(root: str, site: str, layer: int, info: SiteInfo, parts: str) -> list[str]:
    """Write the layer grid's ``units.json``, its map's ``map.json`` and, for every unit of
    ``layer``, ``feature.json`` and a link to each recipe's visualization and attribution map;
    the units' rows of the bulk export go to files in the folder ``parts``, one table of
    ``export.ROW_GROUP`` rows at most each (their paths are returned; ``_drain`` reads them
    back), not back to the main process, where every layer's rows would wait for the export
    at once (some 10 KB a feature as Python objects); the main process holds one file's
    table at a time, as Arrow columns, whatever the size of a layer and the model."""
    atlas = _atlas(root)
    view = atlas.layer(layer)
    writer = FeatureWriter(info, view, atlas.examples, atlas.thumbnails)
    atomic_write_bytes(Path(site, urls.layer_units(info.slug, view.spec)),
                       compact_json(grid_record(atlas, view)))
    if view.map is not None:
        atomic_write_bytes(Path(site, urls.layer_map(info.slug, view.spec)),
                           compact_json(map_record(atlas, view)))
    rows: list[dict] = []
    written: list[str] = []

    def flush() -> None:
        part = Path(parts, f"{info.slug}-{layer}-{len(written)}.arrow")
        export.write_part(export.feature_table(rows), part)
        written.append(str(part))
        rows.clear()

    # each recipe's folder of images (view.vis_path, view.attribution_path), as text
    folders = {recipe: f"{view.store.vis_dir(layer, recipe)}/" for recipe in view.vis}
    for unit in view.units:
        out = f"{site}/{urls.feature_dir(info.slug, view.spec, unit)}/"
        record = writer.record(unit)
        rows.append(export.feature_row(record))
        if len(rows) == export.ROW_GROUP:
            flush()
        write_new(out + urls.FEATURE_JSON, compact_json(record))
        for recipe, result in view.results(unit):
            vis_file, attr_file = view.files[recipe]
            # the atlas keeps its PNG; the site links its AVIF display copy
            link_display(folders[recipe] + result["image"], out + vis_file)
            if result.get("attribution"):
                link_display(folders[recipe] + result["attribution"], out + attr_file)
            for src, name in view.diversity_files(unit, recipe):  # --diversity N: images 1..N-1
                write_display(src, Path(out, name))
    if rows:
        flush()
    return written


def _findings(root: str) -> dict[str, Any]:
    """``findings.measure`` of the atlas at ``root`` (in a worker: it reads every layer's
    index, and the main process has mkdocs to run)."""
    atlas = _atlas(root)
    return findings.measure(atlas.store, atlas.spec, atlas.slug)


def _example_files(root: str, site: str, slug: str, numbers: list[int]) -> int:
    """Write the thumbnails of the dataset examples that some page or ``feature.json`` names,
    once per model and example (every page that shows one links to the same file), as AVIF."""
    examples = _atlas(root).examples
    if examples is None:
        return 0
    for n in numbers:
        src, dst = examples.thumb_path(n), example_path(slug, examples.thumbs, n)
        if src is not None and dst is not None and src.is_file():
            write_display(src, Path(site, dst))
    return len(numbers)


def _feature_pages(root: str, site: str, layer: int, units: list[int], info: SiteInfo,
                   shell: pages.Shell) -> int:
    """Render the feature pages of ``units`` of ``layer`` into ``shell`` (``pages``) and
    write them; returns how many."""
    atlas = _atlas(root)
    view = atlas.layer(layer)
    writer = FeatureWriter(info, view, atlas.examples, atlas.thumbnails)
    renderer = pages.PageRenderer(shell)
    for unit in units:
        where = urls.feature_dir(info.slug, view.spec, unit)
        html = renderer.render(pages.page_source(where), writer.meta(unit))
        write_new(f"{site}/{where}/index.html", pages.encode(html))
    return len(units)


@dataclass
class LayerPages:
    """What writing one layer's pages tells the model-level pages."""

    summary: LayerSummary
    extra: dict  # the layer's part of config.extra.atlas
    classes: Path  # the layer's run of class search entries (ClassIndex.run, Run.save)
    examples: np.ndarray  # example numbers the pages show, sorted, each once
    written: set[str]  # Markdown files written (relative to the docs dir)
    words: Path  # the layer's run of word index entries (WordIndex.run, Run.save)
    # some feature pages as (source, Markdown, data): their layer's shell is rendered from
    # the first, and the others are checked against mkdocs (``pages.LayerRequest``)
    samples: list[tuple[str, str, dict]]


def _layer_pages(root: str, docs_root: str, layer: int, prev: int | None, nxt: int | None,
                 info: SiteInfo, parts: str, checked: int = pages.CHECKED) -> LayerPages:
    """Write the Markdown of the layer page; sample its feature pages: the first (its
    shell's) and the ``checked`` last (``pages.LayerRequest``); write the layer's runs of the
    class and word search indexes to files in the folder ``parts`` (the main process maps
    them, so that it never holds a model's entries)."""
    atlas = _atlas(root)
    view = atlas.layer(layer)
    docs = DocsWriter(Path(docs_root))
    writer = FeatureWriter(info, view, atlas.examples, atlas.thumbnails)
    units = info.units_by_layer[layer]
    chosen = [units[0], *units[-max(1, checked):]]
    samples = [(pages.page_source(urls.feature_dir(info.slug, view.spec, u)),
                writer.markdown(u), writer.meta(u)) for u in chosen]
    docs.write(f"{urls.layer_dir(info.slug, view.spec)}/index.md",
               layer_page(atlas, view, prev, nxt))
    used: set[int] = set()
    if view.index is not None:
        used = {int(n) for n in view.index.top_ids[view.units].ravel() if n >= 0}
        for unit in view.units:  # every quantile example feature.json names (its script
            for q in view.quantiles(unit):  # shows the first QUANTILE_SHOWN of each)
                used.update(n for n, _ in q["examples"])
    classes = ClassIndex(info.class_names)
    stem = Path(parts, f"{info.slug}-{layer}")
    return LayerPages(LayerSummary.of(view), writer.layer_extra(),
                      classes.run(classes.entries(view)).save(Path(f"{stem}-classes")),
                      np.array(sorted(used), dtype=np.int64), docs.written,
                      WordIndex.run(WordIndex.entries(view, _thumbs(atlas))).save(
                          Path(f"{stem}-words")), samples)


def _shown(layers: Iterable[LayerPages]) -> list[int]:
    """The example numbers that some page of ``layers`` shows, sorted, each once."""
    return np.unique(np.concatenate([np.zeros(0, np.int64), *(p.examples for p in layers)])
                     ).tolist()


def _thumbs(atlas: AtlasView) -> list[str]:
    """The visualization file names beside a feature page, one per recipe, primary first."""
    files = urls.recipe_files(atlas.recipes)
    return [files[r][0] for r in atlas.recipes]


# -- this process: model-level pages, mkdocs, swap ------------------------------------------
@dataclass
class _Model:
    """One atlas of the site being built."""

    store: AtlasStore
    view: AtlasView
    info: SiteInfo
    units_by_layer: dict[int, Sequence[int]]  # compact_units
    pages: dict[int, LayerPages] = field(default_factory=dict)
    findings: Future | None = None  # findings.measure's, from a worker (``_findings``)
    hint: str = ""  # the header search's placeholder (``_search_hint``)

    @property
    def layers(self) -> list[int]:
        return sorted(self.units_by_layer)

    @property
    def summaries(self) -> list[LayerSummary]:
        return [self.pages[layer].summary for layer in self.layers]


def _model_level(m: _Model, docs: DocsWriter, site: Path,
                 shard_entries: int | None = None) -> tuple[dict, dict | None]:
    """The model's page, word page and index, class index; returns its part of
    ``config.extra.atlas`` and its word index's entry of ``models.json``.
    ``shard_entries``: entries per word-index and class-index shard (default
    ``search.SHARD_ENTRIES``)."""
    atlas, info = m.view, m.info
    classes = ClassIndex(info.class_names)
    words = WordIndex(_thumbs(atlas), shard_entries)
    for p in m.pages.values():
        docs.written |= p.written
        classes.add(Run.load(p.classes))  # mapped: the entries stay on disk until read
        words.add(Run.load(p.words))
    m.hint = _search_hint(m, words, classes)
    docs.write(f"{atlas.slug}/index.md", model_page(atlas, m.summaries))
    found = (m.findings.result() if m.findings is not None  # the paper's findings
             else findings.measure(m.store, atlas.spec, atlas.slug))
    atomic_write_bytes(site / atlas.slug / "findings" / "findings.json", compact_json(found))
    docs.write(f"{atlas.slug}/findings/index.md", findings.findings_page(found))
    words_meta = None
    if atlas.label_info is not None:
        docs.write(f"{urls.words_dir(atlas.slug)}/index.md", words_page(atlas, m.summaries))
        rows = []  # each shard written and let go as soon as it is made
        for i, shard in enumerate(words.iter_shards()):
            atomic_write_bytes(site / urls.word_shard(atlas.slug, i), compact_json(shard))
            rows.append(words.shard_row(shard))
        words_meta = words.meta(atlas.slug, rows, atlas.labeler)
    if classes.names:
        with atomic_file(site / atlas.slug / urls.CLASSES_JSON) as f:  # a class at a time
            for chunk in classes.iter_json():
                f.write(chunk.encode("utf-8"))
        rows = []
        for i, shard in enumerate(classes.iter_shards(shard_entries)):
            atomic_write_bytes(site / urls.class_shard(atlas.slug, i), compact_json(shard))
            rows.append(classes.shard_row(shard))
        atomic_write_bytes(site / urls.class_index(atlas.slug),
                           compact_json(classes.head(atlas.slug, rows)))
    extra = site_extra(info)
    extra["layers"] = {layer: p.extra for layer, p in m.pages.items()}
    return extra, words_meta


def _site_level(models: list[_Model], docs: DocsWriter, site: Path,
                shard_entries: int | None, version: SiteVersion | None) -> dict:
    """Every model's pages, the home page with the model cards, the cross-model view (two
    models or more), ``models.json``; returns ``config.extra.atlas``."""
    extras, index = {}, []
    for m in models:
        extras[m.view.slug], words_meta = _model_level(m, docs, site, shard_entries)
        index.append((m.view, m.summaries, m.units_by_layer, words_meta))
    cards = "\n".join(home_section(m.view, m.summaries) for m in models)
    if len(models) > 1:
        docs.write(f"{urls.COMPARE_DIR}/index.md",
                   compare_page([(m.view, m.summaries) for m in models]))
        cards = (f'<p class="atlas-compare-link"><a href="{urls.COMPARE_DIR}/">Compare the '
                 f"{len(models)} models layer by layer, at the same relative depth</a></p>\n\n"
                 + cards)
    _handbook(docs, cards)
    docs.prune()
    atomic_write_bytes(site / urls.MODELS_JSON, compact_json(models_index(index)))
    return {"models": extras, "version": None if version is None else version.name,
            "search_hint": models[0].hint}


def _search_hint(m: _Model, words: WordIndex, classes: ClassIndex) -> str:
    """The header search's placeholder from what the model's pages hold (a layer/unit of an
    FFN layer where it has any: the number is the one in its URL)."""
    layers = [i for i in m.layers if m.view.spec.layers[i].kind == urls.FFN] or m.layers
    layer = layers[len(layers) // 2] if layers else None
    units = m.units_by_layer.get(layer, []) if layer is not None else []
    return search_hint(words.label_counts(), classes.class_counts(), m.info.class_names, layer,
                       units[min(17, len(units) - 1)] if units else None)


def _nav(base_nav: list | None, models: list[_Model]) -> list:
    nav = list(base_nav or [{"Home": "index.md"}])
    sections: list = []
    for m in models:
        slug = m.view.slug
        model: list = [f"{slug}/index.md"]
        if m.view.label_info is not None:
            model.append({"Search by word": f"{urls.words_dir(slug)}/index.md"})
        model.append({"Findings": f"{slug}/findings/index.md"})
        for layer in m.layers:  # "Layer 3", "Key channels of block 3"
            ref = m.view.spec.layers[layer]
            page = f"{urls.layer_dir(slug, ref)}/index.md"
            model.append({urls.layer_name(ref).capitalize(): page})
        sections.append({slug: model})
    if len(models) > 1:
        sections.append({"Compare models": f"{urls.COMPARE_DIR}/index.md"})
    return [nav[0], *sections, *nav[1:]]


class _NoDirtyWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "dirty' build" not in record.getMessage()


def mkdocs_config(docs_dir: Path, site_dir: Path) -> MkDocsConfig:
    """The shipped ``mkdocs.yml`` pointed at ``docs_dir`` and ``site_dir`` (made absolute:
    mkdocs resolves relative paths against the config file's directory, not the cwd)."""
    from mkdocs.config import load_config

    return load_config(config_file=str(mkdocs_yml()), docs_dir=str(Path(docs_dir).resolve()),
                       site_dir=str(Path(site_dir).resolve()))


def run_mkdocs(cfg: MkDocsConfig, nav_for: Callable[[list], list] | None = None,
               extra: dict | None = None, slugs: Sequence[str] = (),
               layers: Sequence[pages.LayerRequest] = (),
               ready: Callable[[pages.LayerRequest, pages.Shell], None] | None = None) -> None:
    """Build with ``cfg``; ``nav_for`` maps the handbook's nav to the site's, ``extra``
    becomes ``config.extra.atlas`` for the templates. The feature pages of the models
    ``slugs`` are not among mkdocs' sources: once its environment is ready, the shell of the
    feature pages of each of ``layers`` is rendered and checked, and handed to
    ``ready(request, shell)`` (``pages``)."""
    from mkdocs.commands.build import build

    if nav_for is not None:
        cfg["nav"] = nav_for(cfg["nav"])
    if extra is not None:
        cfg["extra"]["atlas"] = extra
    # the theme's files no page loads (source maps, other languages' search) stay out
    cfg["plugins"][theme_files.PLUGIN_NAME] = theme_files.UnusedThemeFiles()
    if slugs:
        cfg["plugins"][pages.PLUGIN_NAME] = pages.FeaturePageShells(
            pages.feature_page_pattern(slugs), layers, ready or (lambda request, shell: None))
    build_log = logging.getLogger("mkdocs.commands.build")
    no_dirty = _NoDirtyWarning()
    build_log.addFilter(no_dirty)
    try:
        build(cfg, dirty=True)
    finally:
        build_log.removeFilter(no_dirty)


def _chunks(units: list[int], size: int = 2048) -> list[list[int]]:
    """``units`` in runs of at most ``size``, alike in length: a task per run.

    >>> [len(c) for c in _chunks(list(range(5000)))]
    [1666, 1667, 1667]
    """
    n = max(1, -(-len(units) // size))
    return [units[i * len(units) // n:(i + 1) * len(units) // n] for i in range(n)]


def _feature_pages_built(jobs: list[Future]) -> int:
    """How many feature pages ``jobs`` wrote; a failed one fails the build with its
    traceback."""
    built = 0
    for job in jobs:
        try:
            built += job.result()
        except Exception as e:  # noqa: BLE001 - it goes on, with the worker's traceback
            why = "".join(traceback.format_exception(e))
            raise AtlasError("site: a process building feature pages failed:\n" + why) from e
    return built


def _feature_sources(models: list[_Model]) -> Iterator[str]:
    """The Markdown source paths the feature pages would have (``pages.page_source``), in
    string order, made a layer at a time. A layer's paths all begin with its folder and a
    slash, and no layer's folder begins another's, so the layers are in order by their
    folders."""
    layers = sorted(((urls.layer_dir(m.view.slug, m.view.spec.layers[layer]) + "/", m, layer)
                     for m in models for layer in m.units_by_layer), key=lambda t: t[0])
    for _, m, layer in layers:
        ref = m.view.spec.layers[layer]
        yield from sorted(pages.page_source(urls.feature_dir(m.view.slug, ref, unit))
                          for unit in m.units_by_layer[layer])


@contextlib.contextmanager
def _gc_frozen() -> Iterator[None]:
    """This process's objects out of the garbage collector's sight in the block (``gc.freeze``)
    and back after: the worker processes forked in it inherit them, and their collections no
    longer walk them all (each walk touches, so copies, the pages they lie in). On the demo's
    shape, the build's processes spent 0.53 s of CPU collecting garbage, 0.22 s so. Objects
    frozen already (by whoever called) are left so."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _swap(tmp: Path, site_dir: Path) -> None:
    """Replace ``site_dir`` by ``tmp``; the old site is deleted only after the swap."""
    old = None
    if site_dir.exists():
        old = site_dir.with_name(f".{site_dir.name}.old-{os.getpid()}")
        os.replace(site_dir, old)
    os.replace(tmp, site_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _site_models(models: list[_Model], extra: dict[str, str] | None) -> dict[str, str]:
    """``{model name: slug}`` of the site's models, for links to similar units in other
    models; a name that two atlases of the site share (other weights) links nowhere."""
    names = [m.view.model for m in models]
    own = {m.view.model: m.view.slug for m in models if names.count(m.view.model) == 1}
    return {**(extra or {}), **own}


def build_site(stores: AtlasStore | Sequence[AtlasStore], site_dir: Path | None = None, *,
               workers: int | None = None, shard_entries: int | None = None,
               site_models: dict[str, str] | None = None,
               version: SiteVersion | None = None, site_url: str | None = None) -> Path:
    """Build the static atlas of ``stores`` (one atlas or several) into ``site_dir``
    (default ``DIR/site`` for one atlas; required for several).

    ``workers``: processes to use (default: every CPU); ``shard_entries``: entries per shard
    of the word index (default ``search.SHARD_ENTRIES``); ``site_models``: ``{model name:
    slug}`` of other atlases whose pages lie beside these in the same site (similar units in
    them get links; others are shown as text); ``version``: the published version this site
    is (permalinks, version selector; its ``root_url`` is the site's address); ``site_url``:
    the absolute URL the site will be served at (canonical links, absolute permalinks,
    sitemaps); None: the one the (first) atlas was built with (``--site-url``), "" for none.
    The previous site stays in place until the new one is complete.

    >>> import tempfile
    >>> from pipeline.testing.fake import make_fake_atlas, tiny_spec
    >>> spec = tiny_spec(img_size=32, patch_size=8, depth=1, embed_dim=8, num_heads=1)
    >>> site = build_site(make_fake_atlas(tempfile.mkdtemp(), spec), workers=1)
    >>> sorted(p.name for p in site.iterdir())[:3]
    ['404.html', 'assets', 'citing']
    """
    if not mkdocs_yml().is_file() or not handbook_dir().is_dir():
        raise AtlasError(f"the site templates are missing ({mkdocs_yml()}, {handbook_dir()}): "
                         "run from a checkout of the repository, or reinstall the package "
                         "(its data files are missing)")
    stores = [stores] if isinstance(stores, AtlasStore) else list(stores)
    if not stores:
        raise AtlasError("no atlas to build a site from")
    if site_dir is None and len(stores) > 1:
        raise AtlasError("a site of several atlases needs a site folder")
    site_dir = Path(site_dir) if site_dir is not None else stores[0].root / "site"
    models = []
    for store in stores:
        view = AtlasView(store)
        units = {layer.index: compact_units(u) for layer in view.spec.layers
                 if (u := page_units(store, layer))}
        models.append(_Model(store, view, None, units))  # type: ignore[arg-type]
    slugs = [m.view.slug for m in models]
    if len(set(slugs)) < len(slugs):
        twice = sorted({s for s in slugs if slugs.count(s) > 1})
        raise AtlasError(f"the same model and weights twice ({', '.join(twice)}): give each "
                         "atlas once")
    site_dir.parent.mkdir(parents=True, exist_ok=True)
    for kind in ("tmp", "old", "docs", "export"):  # left by an interrupted build
        for stale in site_dir.parent.glob(f".{site_dir.name}.{kind}-*"):
            shutil.rmtree(stale, ignore_errors=True)
    if len(models) == 1:  # kept between builds: unchanged sources are not rewritten
        docs = DocsWriter(stores[0].root / "build" / "docs")
        docs.root.mkdir(parents=True, exist_ok=True)
    else:
        docs = DocsWriter(Path(tempfile.mkdtemp(prefix=f".{site_dir.name}.docs-",
                                                dir=site_dir.parent)))
    tmp = Path(tempfile.mkdtemp(prefix=f".{site_dir.name}.tmp-", dir=site_dir.parent))
    # the workers' files for this process: the export's row groups, the search indexes' runs
    parts = tempfile.mkdtemp(prefix=f".{site_dir.name}.export-", dir=site_dir.parent)
    cpus = workers or os.cpu_count() or 2
    try:
        os.chmod(tmp, 0o755)
        cfg = mkdocs_config(docs.root, tmp)
        site_url = (version.base_url if version is not None
                    else urls.site_root(saved_site_url(stores[0]) if site_url is None
                                        else site_url))
        cfg["site_url"] = site_url or ""
        year, linked = build_year(), _site_models(models, site_models)
        for m in models:
            m.info = SiteInfo.of(m.view, m.units_by_layer, year, site_url,
                                 None if version is None else version.name)
            m.info.site_models = {**linked, **m.info.site_models}
            others = [o for o in models
                      if o is not m and linked.get(o.view.model) == o.view.slug]
            m.info.site_pages = {o.view.model: o.units_by_layer for o in others}
            m.info.site_roots = {o.view.model: str(o.store.root) for o in others}
            m.info.site_layers = {o.view.model: {layer.index: layer for layer in o.view.spec.layers}
                                  for o in others}
        clock = _Phases()
        pages.prepare(cfg)  # before the workers are forked: they inherit it
        with _gc_frozen(), ProcessPoolExecutor(cpus) as pool:
            # 1. the layer pages' Markdown; feature.json and images begin meanwhile
            jobs, files = {}, {}  # files: per model, its layers' export rows
            for m in models:  # first, as the main process needs them first of all
                m.findings = pool.submit(_findings, str(m.store.root))
            for m in models:
                root, layers = str(m.store.root), m.layers
                prev, nxt = [None, *layers[:-1]], [*layers[1:], None]
                for i, layer in enumerate(layers):
                    jobs[m.view.slug, layer] = pool.submit(
                        _layer_pages, root, str(docs.root), layer, prev[i], nxt[i], m.info,
                        parts, pages.CHECKED)
                files[m.view.slug] = [pool.submit(_layer_files, root, str(tmp), layer, m.info,
                                                  parts) for layer in layers]
            for m in models:
                m.pages = {layer: jobs[m.view.slug, layer].result() for layer in m.layers}
            copies = [pool.submit(_example_files, str(m.store.root), str(tmp), m.view.slug,
                                  _shown(m.pages.values())) for m in models]
            clock.lap("layer pages")
            # 2. mkdocs here; the workers render the feature pages as each layer's shell is
            # ready (pages)
            extra = _site_level(models, docs, tmp, shard_entries, version)
            rendered: list[Future] = []
            by_slug = {m.view.slug: m for m in models}

            def ready(request: pages.LayerRequest, shell: pages.Shell) -> None:
                m, layer = by_slug[request.key[0]], request.key[1]
                rendered.extend(pool.submit(_feature_pages, str(m.store.root), str(tmp), layer,
                                            chunk, m.info, shell)
                                for chunk in _chunks(m.units_by_layer[layer]))

            requests = [pages.LayerRequest((m.view.slug, layer), m.pages[layer].samples)
                        for m in models for layer in m.layers]
            run_mkdocs(cfg, lambda nav: _nav(nav, models), extra, slugs, requests, ready)
            notfound.fix_404(tmp, urlsplit(site_url).path if site_url else "/")
            clock.lap("mkdocs")
            # 3. the export as each layer's files are written; the feature pages
            for slug, layer_jobs in files.items():
                export.write_parquet(_drain(layer_jobs), tmp / urls.export_file(slug))
            built = _feature_pages_built(rendered)
            for job in copies:
                job.result()
            clock.lap("feature pages, files and export (after mkdocs)")
        if site_url is not None:
            sitemap.write(tmp, site_url, heapq.merge(sorted(docs.written),
                                                     _feature_sources(models)))
        clock.lap("sitemap")
        _swap(tmp, site_dir)
        clock.lap("swap")
        log.info("site: %d feature pages; %s", built, clock)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(parts, ignore_errors=True)
        if len(models) > 1:
            shutil.rmtree(docs.root, ignore_errors=True)
    return site_dir


def saved_site_url(store: AtlasStore) -> str | None:
    """The site URL ``store``'s atlas was built with (``build --site-url``), or None."""
    if not store.exists():
        return None
    return store.manifest().get("config", {}).get("site_url") or None


def _drain(jobs: list[Future]) -> Iterator[pa.Table]:
    """The export tables of each ``_layer_files`` job in turn, in order, read from the files
    it wrote, one at a time (each removed once read); a job and its tables are let go once
    taken."""
    while jobs:
        for name in jobs.pop(0).result():
            # nothing here holds the table once yielded, so the next file is read after the
            # caller lets the last one go
            yield _taken(Path(name))


def _taken(part: Path) -> pa.Table:
    """The table in ``part`` (``export.read_part``), which is removed."""
    table = export.read_part(part)
    part.unlink()
    return table


class _Phases:
    """Wall time of the build's phases, for the log."""

    def __init__(self) -> None:
        self.laps: list[tuple[str, float]] = []
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps.append((name, now - self.last))
        self.last = now

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.laps)


