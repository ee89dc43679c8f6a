"""The site stage: atlas → Markdown in ``DIR/build/docs`` → mkdocs → ``DIR/site``.

mkdocs is single-threaded and the slowest part, so the work around it is arranged to keep it
busy and alone on the critical path:

1. every CPU writes Markdown, one layer per task (feature pages, layer page);
2. this process writes the model and home pages and runs mkdocs, while the other CPUs write
   each feature's ``feature.json``, link its visualization and copy the dataset thumbnails
   straight into the output (mkdocs would copy them one ``File`` object at a time).

mkdocs builds into a fresh temporary directory (``dirty=True`` only stops it from cleaning
that directory under the workers' feet); the previous site is replaced only when all is done.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import AtlasError
from pipeline.pages import urls
from pipeline.pages.assets import link_or_copy
from pipeline.pages.cite import build_year
from pipeline.pages.data import AtlasView, page_units
from pipeline.pages.feature import (
    QUANTILE_SHOWN,
    FeatureWriter,
    SiteInfo,
    example_path,
    site_extra,
)
from pipeline.pages.overview import (
    LayerSummary,
    home_section,
    layer_page,
    map_record,
    model_page,
    words_page,
)
from pipeline.pages.search import ClassIndex, WordEntry, WordIndex, models_index
from pipeline.resources import handbook_dir, mkdocs_yml
from pipeline.store import AtlasStore, atomic_write_bytes

if TYPE_CHECKING:
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


# -- worker processes: one layer's Markdown, or its feature.json and images ----------------
_ATLAS: dict[str, AtlasView] = {}


def _atlas(root: str) -> AtlasView:
    if root not in _ATLAS:
        _ATLAS.clear()
        _ATLAS[root] = AtlasView(AtlasStore(root))
    return _ATLAS[root]


def _layer_files(root: str, site: str, layer: int, info: SiteInfo) -> int:
    """Write ``feature.json`` and link each recipe's visualization and attribution map for
    every unit of ``layer``."""
    atlas = _atlas(root)
    view = atlas.layer(layer)
    writer = FeatureWriter(info, view, atlas.examples, atlas.thumbnails)
    if view.map is not None:
        atomic_write_bytes(Path(site, urls.layer_map(info.slug, layer)),
                           _json(map_record(atlas, view)))
    for unit in view.units:
        out = Path(site, urls.feature_dir(info.slug, layer, unit))
        record = json.dumps(writer.record(unit), ensure_ascii=False, separators=(",", ":"),
                            allow_nan=False)
        atomic_write_bytes(out / urls.FEATURE_JSON, record.encode("utf-8"))
        for recipe, _ in view.results(unit):
            vis_file, attr_file = view.files[recipe]
            link_or_copy(view.vis_path(unit, recipe), out / vis_file)
            attribution = view.attribution_path(unit, recipe)
            if attribution is not None:
                link_or_copy(attribution, out / attr_file)
    return len(view.units)


def _example_files(root: str, site: str, slug: str, numbers: list[int]) -> int:
    """Copy the thumbnails of the dataset examples that some page shows."""
    examples = _atlas(root).examples
    if examples is None:
        return 0
    for n in numbers:
        src, dst = examples.thumb_path(n), example_path(slug, examples.thumbs, n)
        if src is not None and dst is not None and src.is_file():
            link_or_copy(src, Path(site, dst))
    return len(numbers)


@dataclass
class LayerPages:
    """What writing one layer's pages tells the model-level pages."""

    summary: LayerSummary
    extra: dict  # the layer's part of config.extra.atlas
    classes: list[tuple[int, float, int, int]]  # class search entries
    examples: set[int]  # example numbers the pages show
    written: set[str]  # Markdown files written (relative to the docs dir)
    words: list[WordEntry]  # word index entries


def _layer_pages(root: str, docs_root: str, layer: int, prev: int | None, nxt: int | None,
                 info: SiteInfo) -> LayerPages:
    """Write the Markdown of every feature page of ``layer`` and of the layer page."""
    atlas = _atlas(root)
    view = atlas.layer(layer)
    docs = DocsWriter(Path(docs_root))
    writer = FeatureWriter(info, view, atlas.examples, atlas.thumbnails)
    for unit in view.units:
        docs.write(f"{urls.feature_dir(info.slug, layer, unit)}/index.md", writer.markdown(unit))
    docs.write(f"{urls.layer_dir(info.slug, layer)}/index.md", layer_page(atlas, view, prev, nxt))
    used = set()
    if view.index is not None:
        used = {int(n) for n in view.index.top_ids[view.units].ravel() if n >= 0}
        for unit in view.units:  # the quantile examples a page shows
            for q in view.quantiles(unit):
                used.update(n for n, _ in q["examples"][:QUANTILE_SHOWN])
    return LayerPages(LayerSummary.of(view), writer.layer_extra(),
                      ClassIndex(info.class_names).entries(view), used, docs.written,
                      WordIndex.entries(view, _thumbs(atlas)))


def _thumbs(atlas: AtlasView) -> list[str]:
    """The visualization file names beside a feature page, one per recipe, primary first."""
    files = urls.recipe_files(atlas.recipes)
    return [files[r][0] for r in atlas.recipes]


# -- this process: model-level pages, mkdocs, swap ------------------------------------------
def _model_level(atlas: AtlasView, info: SiteInfo, docs: DocsWriter, site: Path,
                 pages: dict[int, LayerPages], shard_entries: int | None = None) -> dict:
    """Model and home pages, the handbook, the search indexes; returns ``config.extra.atlas``.
    ``shard_entries``: entries per word-index shard (default ``search.SHARD_ENTRIES``)."""
    summaries = [p.summary for p in pages.values()]
    classes = ClassIndex(info.class_names)
    words = WordIndex(_thumbs(atlas), shard_entries)
    for p in pages.values():
        docs.written |= p.written
        classes.extend(p.classes)
        words.extend(p.words)
    docs.write(f"{atlas.slug}/index.md", model_page(atlas, summaries))
    words_meta = None
    if atlas.label_info is not None:
        docs.write(f"{urls.words_dir(atlas.slug)}/index.md", words_page(atlas, summaries))
        shards = words.shards()
        for i, shard in enumerate(shards):
            atomic_write_bytes(site / urls.word_shard(atlas.slug, i), _json(shard))
        words_meta = words.meta(atlas.slug, shards, atlas.labeler)
    _handbook(docs, home_section(atlas, summaries))
    docs.prune()
    atomic_write_bytes(site / urls.MODELS_JSON, _json(models_index([(atlas, summaries,
                                                           info.units_by_layer, words_meta)])))
    if classes.names:
        atomic_write_bytes(site / atlas.slug / urls.CLASSES_JSON, _json(classes.to_json()))
    extra = site_extra(info)
    extra["layers"] = {layer: p.extra for layer, p in pages.items()}
    return extra


def _nav(base_nav: list | None, atlas: AtlasView, layers: list[int]) -> list:
    model: list = [f"{atlas.slug}/index.md"]
    if atlas.label_info is not None:
        model.append({"Search by word": f"{urls.words_dir(atlas.slug)}/index.md"})
    model += [{f"Layer {layer}": f"{atlas.slug}/{layer}/index.md"} for layer in layers]
    nav = list(base_nav or [{"Home": "index.md"}])
    return [nav[0], {atlas.slug: model}, *nav[1:]]


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
               extra: dict | None = None) -> None:
    """Build with ``cfg``; ``nav_for`` maps the handbook's nav to the site's, ``extra``
    becomes ``config.extra.atlas`` for the templates."""
    from mkdocs.commands.build import build

    if nav_for is not None:
        cfg["nav"] = nav_for(cfg["nav"])
    if extra is not None:
        cfg["extra"]["atlas"] = extra
    build_log = logging.getLogger("mkdocs.commands.build")
    no_dirty = _NoDirtyWarning()
    build_log.addFilter(no_dirty)
    try:
        build(cfg, dirty=True)
    finally:
        build_log.removeFilter(no_dirty)


def _swap(tmp: Path, site_dir: Path) -> None:
    """Replace ``site_dir`` by ``tmp``; the old site is deleted only after the swap."""
    old = None
    if site_dir.exists():
        old = site_dir.with_name(f".{site_dir.name}.old-{os.getpid()}")
        os.replace(site_dir, old)
    os.replace(tmp, site_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_site(store: AtlasStore, site_dir: Path | None = None, *,
               workers: int | None = None, shard_entries: int | None = None,
               site_models: dict[str, str] | None = None) -> Path:
    """Build the static atlas of ``store`` into ``site_dir`` (default ``DIR/site``).

    ``workers``: processes to use (default: every CPU); ``shard_entries``: entries per shard
    of the word index (default ``search.SHARD_ENTRIES``); ``site_models``: ``{model name:
    slug}`` of other atlases whose pages lie beside this one in the same site (similar units
    in them get links; others are shown as text). The previous site stays in place until the
    new one is complete.
    """
    if not mkdocs_yml().is_file() or not handbook_dir().is_dir():
        raise AtlasError(f"the site templates are missing ({mkdocs_yml()}, {handbook_dir()}): "
                         "run from a checkout of the repository, or reinstall the package "
                         "(its data files are missing)")
    atlas = AtlasView(store)
    site_dir = Path(site_dir) if site_dir is not None else store.root / "site"
    units_by_layer = {layer.index: units for layer in atlas.spec.layers
                      if (units := page_units(store, layer))}
    docs = DocsWriter(store.root / "build" / "docs")
    site_dir.parent.mkdir(parents=True, exist_ok=True)
    for kind in ("tmp", "old"):  # left by an interrupted build
        for stale in site_dir.parent.glob(f".{site_dir.name}.{kind}-*"):
            shutil.rmtree(stale, ignore_errors=True)
    docs.root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{site_dir.name}.tmp-", dir=site_dir.parent))
    cpus = workers or os.cpu_count() or 2
    root, layers = str(store.root), sorted(units_by_layer)
    try:
        os.chmod(tmp, 0o755)
        cfg = mkdocs_config(docs.root, tmp)
        info = SiteInfo.of(atlas, units_by_layer, build_year(), cfg["site_url"] or None)
        info.site_models = {**(site_models or {}), **info.site_models}
        clock = _Phases()
        # 1. every CPU writes Markdown, layer by layer
        with ProcessPoolExecutor(cpus) as pool:
            prev, nxt = [None, *layers[:-1]], [*layers[1:], None]
            pages = [job.result() for job in [
                pool.submit(_layer_pages, root, str(docs.root), layer, prev[i], nxt[i], info)
                for i, layer in enumerate(layers)]]
        clock.lap("markdown")
        # 2. mkdocs on this process while the others write feature.json and copy images
        with ProcessPoolExecutor(max(1, cpus - 1)) as pool:
            jobs: list[Future] = [pool.submit(_layer_files, root, str(tmp), layer, info)
                                  for layer in layers]
            used = set().union(*(p.examples for p in pages))
            jobs.append(pool.submit(_example_files, root, str(tmp), atlas.slug, sorted(used)))
            extra = _model_level(atlas, info, docs, tmp, dict(zip(layers, pages, strict=True)),
                                 shard_entries)
            run_mkdocs(cfg, lambda nav: _nav(nav, atlas, layers), extra)
            clock.lap("mkdocs")
            for job in jobs:
                job.result()
            clock.lap("files (after mkdocs)")
        _swap(tmp, site_dir)
        clock.lap("swap")
        log.info("site: %d feature pages; %s", sum(map(len, units_by_layer.values())), clock)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return site_dir


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


def _json(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")
