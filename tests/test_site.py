"""The site stage end to end on a small synthetic atlas: layout, links, escaping, portability."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from pipeline.pages import build, markup
from pipeline.pages.fake import TRICKY_CLASS, TRICKY_ID, make_fake_atlas, tiny_spec
from pipeline.pages.urls import model_slug, relative
from pipeline.resources import mkdocs_yml
from pipeline.store import AtlasStore

TINY = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 48, "num_heads": 2}
VIS_UNITS = 150  # units 150..191 have no visualization
SLUG = "vit_tiny_patch16_224"
_BUILT: dict[str, Path] = {}


def build_small_site(base: Path) -> Path:
    """2 layers x 192 units; layer 1 not indexed (so it has pages only for visualized units)."""
    if "site" not in _BUILT:
        store = make_fake_atlas(base / "atlas", tiny_spec(**TINY), topk=6, n_examples=40,
                                vis_units=VIS_UNITS, index_layers=[0])
        _BUILT["site"] = build.build_site(store)
    return _BUILT["site"]


@pytest.fixture(scope="session")
def small_site(tmp_path_factory) -> Path:
    return build_small_site(tmp_path_factory.mktemp("site"))


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, url)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.refs.append((tag, name, value))


class _Strings(HTMLParser):
    """Text nodes and attribute values as a browser would decode them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.strings: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.strings.update(v for _, v in attrs if v)

    def handle_data(self, data: str) -> None:
        self.strings.add(data)


def _html_pages(site: Path) -> list[Path]:
    """Every page but mkdocs' 404.html, which uses root-absolute URLs by design (a server
    shows it at arbitrary paths)."""
    return sorted(p for p in site.rglob("*.html") if p.name != "404.html")


def _refs(page: Path) -> list[tuple[str, str, str]]:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.refs


def test_layout_and_feature_json(small_site: Path):
    assert (small_site / "index.html").is_file()
    assert (small_site / SLUG / "index.html").is_file()
    pages0 = list((small_site / SLUG / "0").glob("*/index.html"))
    pages1 = list((small_site / SLUG / "1").glob("*/index.html"))
    assert len(pages0) == 192 and len(pages1) == VIS_UNITS
    feature = json.loads((small_site / SLUG / "0" / "0" / "feature.json").read_text())
    assert feature["format_version"] == 1
    assert (feature["model"], feature["layer"], feature["unit"]) == (
        "vit_tiny_patch16_224", 0, 0)
    assert feature["module"] == "blocks.0.mlp.act" and feature["weights"] == "random(seed=0)"
    assert feature["visualization"] == "visualization.png" and feature["recipe"]["steps"] == 1
    assert feature["top"][0]["id"] == TRICKY_ID and feature["top"][0]["label"] == TRICKY_CLASS
    assert len(feature["top"][0]["heatmap"]) == 4 and len(feature["top"][0]["heatmap"][0]) == 4
    top = feature["top"][0]["image"]
    assert (small_site / SLUG / "0" / "0" / top).resolve().is_file()
    assert len(feature["histogram"]["edges"]) == len(feature["histogram"]["counts"]) + 1
    for name in ("feature.json", "visualization.png", "index.html"):  # publishable as is
        assert (small_site / SLUG / "0" / "0" / name).stat().st_mode & 0o444 == 0o444
    empty = json.loads((small_site / SLUG / "0" / "1" / "feature.json").read_text())
    assert len(empty["top"]) == 4  # two empty slots of 6 are dropped
    novis = json.loads((small_site / SLUG / "0" / "170" / "feature.json").read_text())
    assert novis["visualization"] is None and novis["activation"] is None
    noindex = json.loads((small_site / SLUG / "1" / "3" / "feature.json").read_text())
    assert noindex["top"] == [] and noindex["histogram"] is None
    index = json.loads((small_site / "models.json").read_text())
    (model,) = index["models"]
    assert model["slug"] == SLUG and model["classes"] == f"{SLUG}/classes.json"
    assert [(x["layer"], x["pages"]) for x in model["layers"]] == [
        (0, None), (1, list(range(VIS_UNITS)))]
    classes = json.loads((small_site / SLUG / "classes.json").read_text())
    pairs = list(zip(classes["units"][0][::2], classes["units"][0][1::2], strict=True))
    assert classes["classes"][0] == TRICKY_CLASS and (0, 0) in pairs


def _check(schema: dict, value: object, where: str = "$") -> None:
    """The subset of JSON Schema the feature schema uses."""
    kinds = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float),
             "null": type(None), "boolean": bool}
    if "const" in schema:
        assert value == schema["const"], where
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        assert any(isinstance(value, kinds[t]) and not (t in ("integer", "number") and
                   isinstance(value, bool)) for t in types), f"{where}: {value!r} not {types}"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{where}: missing {key}"
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                _check(sub, value[key], f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            _check(schema["items"], item, f"{where}[{i}]")
    if "minimum" in schema and isinstance(value, (int, float)):
        assert value >= schema["minimum"], where


def test_feature_json_matches_published_schema(small_site: Path):
    schema = json.loads((small_site / "schema" / "feature.schema.json").read_text())
    for path in [*sorted((small_site / SLUG).glob("*/*/feature.json"))[::17]]:
        _check(schema, json.loads(path.read_text()), str(path))


def test_every_internal_link_and_image_resolves(small_site: Path):
    pages = _html_pages(small_site)
    assert len(pages) > 300
    checked = 0
    for page in pages:
        for tag, _, url in _refs(page):
            parts = urlsplit(url)
            if parts.scheme in ("http", "https", "mailto") or url.startswith("#"):
                assert tag == "a", f"{page}: <{tag}> loads {url} from outside the site"
                continue
            assert not url.startswith("/"), f"{page}: absolute link {url}"
            target = (page.parent / unquote(parts.path)).resolve()
            if parts.path.endswith("/") or target.is_dir():
                target = target / "index.html"
            assert target.is_file(), f"{page}: broken link {url}"
            assert small_site.resolve() in target.parents, f"{page}: {url} leaves the site"
            checked += 1
    assert checked > 5000


def test_no_request_leaves_the_site(small_site: Path):
    external = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.I)
    for page in _html_pages(small_site):
        for tag, _, url in _refs(page):
            if tag != "a":
                assert not re.match(r"(?:https?:)?//", url), f"{page}: <{tag}> {url}"
    for css in small_site.rglob("*.css"):
        assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", css.read_text()), css
        assert "@import" not in css.read_text(), css
    assert not external.search((small_site / "index.html").read_text().replace(
        'href="https://', "").replace("href='https://", ""))


def test_dataset_strings_are_escaped_everywhere(small_site: Path):
    raw = [TRICKY_CLASS, '<b>"', "<i>y</i>", 'z="q"']
    for page in _html_pages(small_site):
        text = page.read_text(encoding="utf-8")
        for needle in raw:
            assert needle not in text, f"{page} holds raw {needle!r}"
    feature = _Strings()
    feature.feed((small_site / SLUG / "0" / "0" / "index.html").read_text())
    assert TRICKY_CLASS in feature.strings and TRICKY_ID in feature.strings
    assert f"example 1: {TRICKY_ID}" in feature.strings  # the thumbnail's alt attribute
    layer = _Strings()
    layer.feed((small_site / SLUG / "0" / "index.html").read_text())
    assert any(s.startswith(TRICKY_CLASS + "\n") for s in layer.strings)  # data-c attribute


def test_feature_pages_out_of_nav_and_search(small_site: Path):
    search = json.loads((small_site / "search" / "search_index.json").read_text())
    locations = [d["location"] for d in search["docs"]]
    assert any(loc.startswith("method/") for loc in locations)
    assert not [loc for loc in locations if re.match(rf"{SLUG}/\d+/\d+/", loc)]
    home = (small_site / "index.html").read_text()
    nav = re.findall(r'<a href="([^"]*)"\s+class="md-nav__link', home)
    assert f"{SLUG}/0/" in nav and f"{SLUG}/1/" in nav and "method/" in nav
    assert not [url for url in nav if re.match(rf"{SLUG}/\d+/\d+/", url)]


def test_feature_page_content_and_size(small_site: Path):
    page = (small_site / SLUG / "0" / "5" / "index.html").read_text()
    assert 'href="../4/" data-key="k"' in page and 'href="../6/" data-key="j"' in page
    assert 'href="../../1/5/" data-key="l"' in page
    assert "@misc{vitatlas:vit_tiny_patch16_224:L0:U5" in page
    assert "weights random(seed=0), layer 0, unit 5" in page and "version 0.1.0" in page
    assert '<script type="application/json" id="atlas-heatmaps">' in page
    assert "md-nav" not in page  # lean template: no theme nav
    last = (small_site / SLUG / "1" / str(VIS_UNITS - 1) / "index.html").read_text()
    assert 'data-key="j"' not in last and 'href="../../0/149/" data-key="h"' in last
    sizes = [p.stat().st_size for p in (small_site / SLUG).glob("*/*/index.html")]
    assert max(sizes) < 40_000


def test_rebuild_replaces_and_failed_build_keeps_old_site(small_site: Path, monkeypatch):
    store = AtlasStore(small_site.parent)
    marker = small_site / "marker.txt"
    marker.write_text("old")

    def broken(*args, **kwargs):
        raise RuntimeError("mkdocs failed")

    monkeypatch.setattr(build, "run_mkdocs", broken)
    with pytest.raises(RuntimeError):
        build.build_site(store)
    assert marker.is_file() and (small_site / SLUG / "0" / "0" / "index.html").is_file()
    assert not list(small_site.parent.glob(".site.*"))
    monkeypatch.undo()
    assert build.build_site(store) == small_site
    assert not marker.exists() and (small_site / SLUG / "0" / "0" / "feature.json").is_file()
    assert not list(small_site.parent.glob(".site.*"))


def test_handbook_builds_alone_in_strict_mode(tmp_path: Path):
    from mkdocs.commands.build import build as mkdocs_build
    from mkdocs.config import load_config

    cfg = load_config(config_file=str(mkdocs_yml()), site_dir=str(tmp_path / "hb"),
                      strict=True)
    mkdocs_build(cfg)
    assert (tmp_path / "hb" / "data-format" / "index.html").is_file()
    assert (tmp_path / "hb" / "schema" / "feature.schema.json").is_file()
    assert not (tmp_path / "hb" / "overrides").exists()


@pytest.mark.parametrize("value", ["plain", 'q"b\\s', "x\ny\tz\r", "ü€😀\x00\x7f\x85\u2028",
                                   TRICKY_CLASS, TRICKY_ID, "#: - ? {}[]|>*&!%@`", ""])
def test_yaml_scalars_round_trip(value: str):
    assert yaml.load(markup.yaml_str(value), Loader=yaml.CSafeLoader) == value
    packed = markup.pack("1.5", value, value)
    assert yaml.load(markup.yaml_str(packed), Loader=yaml.CSafeLoader).split(
        markup.SEP, 2)[2] == value


def test_script_json_cannot_close_its_script():
    s = markup.script_json({"x": "</script><script>alert(1)</script><!--"})
    assert "</" not in s and "<!--" not in s and json.loads(s)["x"].startswith("</script>")


def test_urls():
    assert model_slug("vit_base_patch16_clip_quickgelu_224.openai") == (
        "vit_base_patch16_clip_quickgelu_224.openai")
    assert model_slug("a/b c<d>") == "a-b-c-d" and model_slug("assets") == "assets-model"
    assert model_slug("..") == "model"
    assert relative("m/3/17/", "m/3/16") == "../17/" and relative("m/", "m/3") == "../"


def test_atlas_without_results_builds_an_empty_site(tmp_path: Path):
    spec = tiny_spec(**TINY)
    store = AtlasStore(tmp_path / "atlas")
    store.init({"model": spec.name, "dataset": "synthetic:8"}, spec.to_dict(), "hub")
    site = build.build_site(store, tmp_path / "out" / "site")
    assert (site / "index.html").is_file() and (site / SLUG / "index.html").is_file()
    assert json.loads((site / "models.json").read_text())["models"][0]["layers"] == []
    assert not (site / SLUG / "classes.json").exists()


def test_site_command_does_not_load_torch():
    """``vit-atlas site`` / ``serve`` read what the atlas holds: no torch or timm start-up."""
    import subprocess
    import sys

    code = ("import sys, pipeline.cli, pipeline.pages.build, pipeline.pages.serve; "
            "print(sorted(m for m in ('torch', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "[]"
