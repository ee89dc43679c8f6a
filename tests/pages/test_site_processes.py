"""The site stage renders feature pages in worker processes, each into its layer's shell
(``pages``): every page is byte for byte the page mkdocs renders from its Markdown source, the
site is byte for byte the one-process site, and a process that fails fails the build."""

from __future__ import annotations

import hashlib
import os
import random
import re
from pathlib import Path

import pytest

from pipeline.errors import AtlasError
from pipeline.models import create_model, spec_for
from pipeline.site import pages
from pipeline.site.build import SiteVersion, build_site
from pipeline.testing.fake import make_fake_atlas

KW = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 16, "num_heads": 1}


def _digests(site: Path) -> dict[str, str]:
    return {str(p.relative_to(site)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(site.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    """FFN layers and key channels (pages one folder deeper), some units not visualized."""
    spec = spec_for(create_model("vit_tiny_patch16_224", "random", KW), "vit_tiny_patch16_224",
                    KW, kinds=("ffn", "key"))
    return make_fake_atlas(tmp_path_factory.mktemp("fake"), spec, topk=3, n_examples=16,
                           vis_units=20)


def _feature_pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("index.html")
                  if pages.feature_page_pattern([p.relative_to(site).parts[0]]).match(
                      str(p.relative_to(site).with_suffix(".md"))))


@pytest.mark.parametrize("published", [False, True])
def test_every_feature_page_is_the_page_mkdocs_renders(atlas, tmp_path, monkeypatch,
                                                       published):
    """Every feature page is checked against mkdocs' rendering of its Markdown source (the
    build checks two a layer; here all), and the page written is that page, byte for byte:
    header, title, canonical address, description, version selector, content."""
    monkeypatch.setattr(pages, "CHECKED", 10**9)
    theirs: dict[str, bytes] = {}
    real = pages.mkdocs_page

    def recording(env, config, files, nav, source, markdown):
        html = real(env, config, files, nav, source, markdown)
        theirs[source] = pages.encode(html)
        return html

    monkeypatch.setattr(pages, "mkdocs_page", recording)
    how = ({"version": SiteVersion("1.0", "https://example.org/at las/")} if published
           else {"site_url": ""})
    site = build_site(atlas, tmp_path / "site", workers=2, **how)
    written = {str(p.relative_to(site).with_suffix(".md")): p.read_bytes()
               for p in _feature_pages(site)}
    assert len(written) == 64 + 64 + 16 + 16 and "/key/" in "".join(written)
    assert written == theirs
    page = next(iter(written.values())).decode()
    assert ('rel="canonical"' in page) == published and ("atlas-version" in page) == published


def test_a_page_that_differs_from_mkdocs_fails_the_build(atlas, tmp_path, monkeypatch):
    real = pages.PageRenderer.render
    monkeypatch.setattr(pages.PageRenderer, "render",
                        lambda self, source, meta: real(self, source, meta) + " ")
    with pytest.raises(AtlasError, match="differs from mkdocs'"):
        build_site(atlas, tmp_path / "site", workers=1)
    assert not (tmp_path / "site").exists()


def test_processes_give_the_one_process_site_byte_for_byte(atlas, tmp_path, monkeypatch):
    pids = tmp_path / "pids"
    pids.mkdir()
    real = pages.encode

    def recording(html: str) -> bytes:  # the pages really are written by worker processes
        (pids / str(os.getpid())).touch()
        return real(html)

    monkeypatch.setattr(pages, "encode", recording)
    one = _digests(build_site(atlas, tmp_path / "one", workers=1))
    three = _digests(build_site(atlas, tmp_path / "three", workers=3))
    workers = {int(p.name) for p in pids.iterdir()}
    assert workers and os.getpid() not in workers
    assert len([p for p in one if p.endswith("index.html")]) > 160
    assert one == three


def test_a_failing_process_fails_the_build(atlas, tmp_path, monkeypatch):
    parent = os.getpid()
    real = pages.PageRenderer.render

    def failing(self, source, meta):  # only in a worker, on one page
        if os.getpid() != parent and source.endswith("/0/5/index.md"):
            raise RuntimeError("a page that cannot be built")
        return real(self, source, meta)

    monkeypatch.setattr(pages.PageRenderer, "render", failing)
    with pytest.raises(AtlasError, match="(?s)feature pages failed.*cannot be built"):
        build_site(atlas, tmp_path / "site", workers=2)
    assert not (tmp_path / "site").exists()  # nothing half-built is left in its place


def test_lean_html_is_its_regular_expression():
    """``lean_html`` line by line does what its definition does, on white space of every
    sort (Unicode's too), line breaks and kept elements."""
    keep = re.compile(r"(?is)(<(pre|textarea)\b.*?</\2>)")

    def defined(html: str) -> str:
        parts = keep.split(html)
        return "".join(re.sub(r"[ \t]*\n\s*", "\n", p) if i % 3 == 0 else p
                       for i, p in enumerate(parts) if i % 3 != 2)

    alphabet = [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1f", "\x85", "\xa0", "\u2028", "a",
                "<b>", "<pre>", "</pre>", "<PRE x>", "<textarea>", "</textarea>"]
    rng = random.Random(0)
    for _ in range(20_000):
        html = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        assert pages.lean_html(html) == defined(html), repr(html)


def test_export_rows_leave_the_workers_a_row_group_at_a_time(atlas, tmp_path, monkeypatch):
    """A layer's rows of the Parquet export come back in files of ``export.ROW_GROUP`` rows
    at most, each its own row group, so that the main process holds one at a time whatever
    the size of a layer; the export is the same table as with one row group per layer."""
    from concurrent.futures import Future

    import pyarrow.parquet as pq

    from pipeline.site import build, export
    from pipeline.site.data import AtlasView
    from pipeline.site.feature import SiteInfo

    view = AtlasView(atlas)
    units = {layer.index: u for layer in view.spec.layers
             if (u := build.page_units(atlas, layer))}
    info = SiteInfo.of(view, units, build.build_year(), None, None)
    parts = tmp_path / "parts"
    parts.mkdir()

    def files(name: str) -> list[Future]:  # each layer's files, as the build's jobs give them
        jobs = []
        for layer in sorted(units):
            job: Future = Future()
            job.set_result(build._layer_files(str(atlas.root), str(tmp_path / name), layer,
                                              info, str(parts)))
            jobs.append(job)
        return jobs

    whole = tmp_path / "whole.parquet"  # one row group per layer, as before
    export.write_parquet(build._drain(files("one")), whole)
    monkeypatch.setattr(export, "ROW_GROUP", 7)
    jobs = files("chunked")
    assert [len(j.result()) for j in jobs] == [-(-len(units[n]) // 7) for n in sorted(units)]
    chunked = tmp_path / "chunked.parquet"
    assert export.write_parquet(build._drain(jobs), chunked) == sum(map(len, units.values()))
    assert not list(parts.iterdir())  # each file removed once read
    meta = pq.ParquetFile(chunked).metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert max(sizes) == 7 and meta.num_row_groups == sum(-(-len(u) // 7)
                                                          for u in units.values())
    assert pq.read_table(chunked).equals(pq.read_table(whole))


def test_the_export_holds_one_table_at_a_time(tmp_path):
    """The workers hand the export's row groups over as Arrow IPC files (``write_part``),
    never as Python rows; ``write_parquet`` lets go of a table before it takes the next (the
    site stage's main process then holds one row group, as Arrow's columns, ``_drain``), and
    writes them all, in order, each sorted."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.site.export import (
        feature_row,
        feature_table,
        read_part,
        write_parquet,
        write_part,
    )

    paths = []
    for first in (0, 2, 4, 6):  # each part's rows out of order: the table sorts them
        rows = [feature_row({"model": "m", "weights": "w", "layer": 0, "unit": u,
                             "module": "blocks.0.mlp.act", "top": {"id": [f"x/{u}"] * 200},
                             "labels": None, "similar": None}) for u in (first + 1, first)]
        paths.append(tmp_path / f"{first}.arrow")
        write_part(feature_table(rows), paths[-1])
    held = []

    def tables():
        for path in paths:
            held.append(pa.total_allocated_bytes())  # before this one is read
            yield read_part(path)  # nothing here keeps it

    assert write_parquet(tables(), tmp_path / "f.parquet") == 8
    one = read_part(paths[0]).nbytes
    # once the writer has its own buffers (the first table), what Arrow holds before each
    # table is read stays the same: the last one is gone
    assert one > 2000 and max(held[1:]) - min(held[1:]) < one / 2
    table = pq.read_table(tmp_path / "f.parquet")
    assert table.column("unit").to_pylist() == list(range(8))
    assert pq.ParquetFile(tmp_path / "f.parquet").metadata.num_row_groups == 4
    assert table.schema.equals(read_part(paths[0]).schema)
