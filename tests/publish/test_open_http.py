"""``pipeline.open`` over HTTP: a published site served by ``pipeline.site.serving`` reads as
its folder on disk does (versions, aliases of every form, the root), its Parquet export is
fetched in byte ranges, and every failure is an ``AtlasError`` naming the URL."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

import pipeline
from pipeline.aliases import alias_type, write_alias
from pipeline.errors import AtlasError
from pipeline.http_location import RangesIgnored
from pipeline.publish import publish
from pipeline.site import serving, urls
from pipeline.site.data import AtlasView
from pipeline.site.export import SCHEMA, feature_table, write_parquet
from pipeline.site.serve import Request, running
from pipeline.testing.fake import make_fake_atlas, tiny_spec

KW_A = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 16, "num_heads": 1}
URL = "https://example.org/atlas/"
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict:
    """One model published as 1.0 (alias ``old``: a copy) and 1.1 (alias ``latest``: redirect
    pages; ``newest``: a symlink)."""
    base = tmp_path_factory.mktemp("open-http")
    store = make_fake_atlas(base / "a", tiny_spec(**KW_A), model_kwargs=KW_A, vis_units=8)
    root = base / "site"
    publish([store.root], root, "1.0", aliases=["old"], alias_type="copy", site_url=URL,
            workers=1, relate=False)
    publish([store.root], root, "1.1", aliases=["latest"], alias_type="redirect",
            site_url=URL, workers=1, relate=False)
    write_alias(root, "newest", "1.1", "symlink")
    assert [alias_type(root / a) for a in ("old", "latest", "newest")] == [
        "copy", "redirect", "symlink"]
    return {"root": root, "store": store, "slug": AtlasView(store).slug}


@pytest.fixture(scope="module")
def served(site) -> Iterator[tuple[str, list[Request]]]:
    log: list[Request] = []
    with serving(site["root"], log=log) as base:
        yield base, log


def _gets(log: list[Request], since: int, suffix: str) -> list[Request]:
    return [r for r in log[since:] if r.method == "GET" and r.path.endswith(suffix)]


def test_a_version_reads_as_its_folder_does(site, served):
    base, log = served
    local = pipeline.open(site["root"] / "1.1")
    online = pipeline.open(f"{base}/1.1/")
    assert online.model == local.model == "vit_tiny_patch16_224"
    assert online.path == f"{base}/1.1/" and online.path in repr(online)
    assert online.layers == local.layers == [0, 1]
    since = len(log)
    for layer in local.layers:
        assert online.units(layer) == local.units(layer) and len(local.units(layer)) == 64
        for unit in local.units(layer)[::9]:
            record = online.feature(layer, unit)
            assert record == local.feature(layer, unit)
            assert (record["layer"], record["unit"], record["site_version"]) == (
                layer, unit, "1.1")
    fetched = _gets(log, since, urls.FEATURE_JSON)  # one request per record, nothing else
    assert len(fetched) == len(log) - since == 2 * len(range(0, 64, 9))
    with pytest.raises(KeyError, match="no unit 99"):
        online.feature(0, 99)


def test_the_table_is_the_export_read_in_ranges(site, served):
    base, log = served
    slug = site["slug"]
    local = pipeline.open(site["root"] / "1.1")
    online = pipeline.open(f"{base}/1.1")
    since = len(log)
    table = online.table()
    assert table.equals(local.table()) and table.num_rows == 128
    assert table.schema.names == SCHEMA.names
    picked = online.table(["layer", "unit", "label"], filters=[("layer", "==", 1)])
    assert picked.equals(local.table(["layer", "unit", "label"], [("layer", "==", 1)]))
    assert picked.column_names == ["layer", "unit", "label"]
    assert set(picked.column("layer").to_pylist()) == {1} and picked.num_rows == 64
    size = (site["root"] / "1.1" / urls.export_file(slug)).stat().st_size
    reads = _gets(log, since, urls.FEATURES_PARQUET)
    assert reads and all(r.range and r.status == 206 for r in reads)
    assert all(r.sent <= size for r in reads)
    df = online.table(["unit", "z"]).to_pandas()
    assert list(df.columns) == ["unit", "z"] and len(df) == 128


def test_a_directory_atlas_gives_the_same_table(site):
    from_dir = pipeline.open(site["store"].root).table()
    from_site = pipeline.open(site["root"] / "1.1").table()
    assert from_dir.schema == from_site.schema
    assert from_dir.drop_columns(["permalink"]).equals(from_site.drop_columns(["permalink"]))
    relative = from_dir.column("permalink").to_pylist()  # the site's URL comes with the site
    assert from_site.column("permalink").to_pylist() == [f"{URL}1.1/{p}" for p in relative]


@pytest.fixture(scope="module")
def big(site, tmp_path_factory) -> Path:
    """A site folder whose export is large enough to read in parts (pyarrow reads the last
    64 KiB whole for the footer): 16 layers of 1,024 rows with top-16 ids, as the real
    export writes them (``write_parquet``, a row group per layer); no feature pages."""
    folder = tmp_path_factory.mktemp("big-export")
    shutil.copy(site["root"] / "1.1" / urls.MODELS_JSON, folder / urls.MODELS_JSON)
    rng = np.random.default_rng(0)

    def layer(n: int) -> list[dict]:
        rows = []  # columns left out are nulls (the export's schema)
        for unit in range(1024):
            scores = sorted(rng.random(16).tolist(), reverse=True)
            rows.append({"model": "vit_tiny_patch16_224", "weights": "random(seed=0)",
                         "layer": n, "unit": unit, "module": f"blocks.{n}.mlp.act",
                         "activation": float(rng.random()), "z": float(rng.normal()),
                         "top_ids": [f"train/{i:08d}" for i in rng.integers(0, 10**8, 16)],
                         "top_scores": scores, "labels": [], "similar": [],
                         "permalink": f"{URL}1.1/x/{n}/{unit}/"})
        return rows

    (folder / site["slug"]).mkdir()
    write_parquet((feature_table(layer(n)) for n in range(16)),
                  folder / urls.export_file(site["slug"]))
    return folder


def test_a_column_subset_fetches_a_small_part_of_the_file(site, big):
    path = big / urls.export_file(site["slug"])
    size = path.stat().st_size
    log: list[Request] = []
    local = pipeline.open(big)
    with serving(big, log=log) as base:
        online = pipeline.open(base)
        start = len(log)
        few = online.table(["layer", "unit", "activation"])
        few_bytes = sum(r.sent for r in _gets(log, start, urls.FEATURES_PARQUET))
        start = len(log)
        one = online.table(["unit", "activation"], filters=[("layer", "==", 7)])
        one_bytes = sum(r.sent for r in _gets(log, start, urls.FEATURES_PARQUET))
        start = len(log)
        whole = online.table()
        whole_bytes = sum(r.sent for r in _gets(log, start, urls.FEATURES_PARQUET))
    print(f"export {size:,} B: 3 columns {few_bytes:,} B, one layer's 2 columns "
          f"{one_bytes:,} B, every column {whole_bytes:,} B")
    assert few.equals(local.table(["layer", "unit", "activation"])) and few.num_rows == 16384
    assert one.equals(local.table(["unit", "activation"], [("layer", "==", 7)]))
    assert one.num_rows == 1024 and whole.equals(local.table())
    assert size > 500_000
    assert few_bytes < size / 4  # the footer (64 KiB) and three column chunks per row group
    assert one_bytes < few_bytes  # one row group's chunks, besides the footer
    assert size <= whole_bytes < size + 70_000  # every byte once, the footer twice at most


def test_a_server_that_ignores_ranges_sends_the_file_once(site, big):
    path = big / urls.export_file(site["slug"])
    log: list[Request] = []
    with serving(big, ranges=False, log=log) as base:
        online = pipeline.open(base + "/")
        start = len(log)
        with pytest.warns(RangesIgnored, match="does not answer byte-range requests"):
            table = online.table(["unit", "z"])
    assert table.equals(pipeline.open(big).table(["unit", "z"]))
    reads = _gets(log, start, urls.FEATURES_PARQUET)
    assert [(r.status, r.sent) for r in reads] == [(200, path.stat().st_size)]


@pytest.mark.parametrize(("path", "version"), [("", "1.1"), ("/", "1.1"), ("/latest/", "1.1"),
                                               ("/newest", "1.1"), ("/old/", "1.0"),
                                               ("/1.0", "1.0")])
def test_root_and_every_alias_form_resolve(served, path, version):
    base, log = served
    since = len(log)
    atlas = pipeline.open(base + path)
    assert atlas.feature(1, 3)["site_version"] == version
    assert atlas.table(["unit"]).num_rows == 128
    if path == "/latest/":  # redirect pages only: the version comes from the root's list
        asked = [(r.path, r.status) for r in log[since:] if r.path.endswith(".json")]
        assert ("/latest/models.json", 404) in asked and ("/versions.json", 200) in asked
        assert atlas.path.endswith("/1.1/")


def test_a_redirect_alias_on_disk_resolves_too(site):
    assert pipeline.open(site["root"] / "latest").feature(0, 1)["site_version"] == "1.1"


def test_bad_urls_are_atlas_errors_naming_the_url(site, served, big, tmp_path):
    base, _ = served
    with socket.socket() as s:  # a port with nothing behind it
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(AtlasError, match=rf"cannot reach http://127\.0\.0\.1:{closed}/a/"):
        pipeline.open(f"http://127.0.0.1:{closed}/a/")
    with serving(tmp_path) as empty, pytest.raises(
            AtlasError, match=re.escape(f"{empty}/x/ is not a published atlas")):
        pipeline.open(f"{empty}/x/")
    with pytest.raises(AtlasError, match=re.escape(f"{base}/1.1/models.json has no model 'nope'")):
        pipeline.open(f"{base}/1.1/", model="nope")
    with pytest.raises(AtlasError, match=re.escape(f"{base}/9.9/ is not a published atlas")):
        pipeline.open(f"{base}/9.9/")
    with serving(big) as pages_gone:  # models.json and the export, no feature.json
        atlas = pipeline.open(pages_gone)
        with pytest.raises(AtlasError, match=re.escape(f"{pages_gone}/{site['slug']}/0/3/")):
            atlas.feature(0, 3)
    with _failing_server(503) as failing, pytest.raises(
            AtlasError, match=re.escape(f"{failing}/s/versions.json: HTTP 503")):
        pipeline.open(f"{failing}/s/")


def test_no_export_is_an_atlas_error(site, tmp_path, served):
    (tmp_path / urls.MODELS_JSON).write_text(
        (site["root"] / "1.1" / urls.MODELS_JSON).read_text())
    with serving(tmp_path) as base, pytest.raises(
            AtlasError, match=re.escape(f"{base}/{urls.export_file(site['slug'])} is missing")):
        pipeline.open(base).table()


def test_reading_is_lazy():
    """Importing the reader loads no HTTP client and fetches nothing."""
    code = ("import sys, pipeline, pipeline.reader; pipeline.open;"
            "print(sorted(m for m in ('aiohttp', 'fsspec', 'pyarrow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_readme_http_example_runs(site):
    section = README.read_text().split("## From Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    code = next(b for b in blocks if "https://" in b)
    namespace: dict = {}
    with serving(site["root"]) as base:
        exec(compile(code.replace("https://example.org/atlas", base), "README.md", "exec"),
             namespace)
    assert (namespace["atlas"].layers, namespace["atlas"].units(1)[:3]) == ([0, 1], [0, 1, 2])
    assert namespace["record"]["unit"] == 2 and len(namespace["df"]) == 64


@contextlib.contextmanager
def _failing_server(status: int) -> Iterator[str]:
    """A server that answers every request with ``status`` (a site serves no such error)."""

    class Failing(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the base class's name
            self.send_error(status)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    with running(ThreadingHTTPServer(("127.0.0.1", 0), Failing)) as base:
        yield base


def test_models_json_and_versions_json_are_read_as_sent(served):
    base, log = served
    since = len(log)
    pipeline.open(f"{base}/")
    asked = [r.path for r in log[since:]]
    assert asked == ["/versions.json", "/1.1/models.json"]  # nothing else on opening
