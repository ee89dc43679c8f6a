"""The site stage renders feature pages in several processes (``streaming``) and the site is
byte for byte the one-process site; a process that fails fails the build."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pipeline.errors import AtlasError
from pipeline.site import streaming
from pipeline.site.build import build_site
from pipeline.testing.fake import make_fake_atlas, tiny_spec


def _digests(site: Path) -> dict[str, str]:
    return {str(p.relative_to(site)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(site.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    spec = tiny_spec(img_size=32, patch_size=8, depth=2, embed_dim=8, num_heads=1)
    return make_fake_atlas(tmp_path_factory.mktemp("fake"), spec, topk=3)


def test_processes_give_the_one_process_site_byte_for_byte(atlas, tmp_path, monkeypatch):
    built = []
    stream = streaming.FeaturePageStream

    class Counting(stream):  # the pages really are shared out over the processes
        def __init__(self, pattern, processes=1):
            super().__init__(pattern, processes)
            built.append(self)

    monkeypatch.setattr(streaming, "FeaturePageStream", Counting)
    one = _digests(build_site(atlas, tmp_path / "one", workers=1))
    three = _digests(build_site(atlas, tmp_path / "three", workers=3))
    assert [s.processes for s in built] == [1, 3]
    assert built[1].built == built[0].built == 2 * 32
    assert len([p for p in one if p.endswith("index.html")]) > 64
    assert one == three


def test_a_failing_process_fails_the_build(atlas, tmp_path, monkeypatch):
    from mkdocs.commands import build as mkdocs_build

    parent = os.getpid()
    real = mkdocs_build._build_page

    def failing(page, *args, **kwargs):  # only in a child, on one page
        if os.getpid() != parent and page.file.src_uri.endswith("/5/index.md"):
            raise RuntimeError("a page that cannot be built")
        return real(page, *args, **kwargs)

    monkeypatch.setattr(mkdocs_build, "_build_page", failing)
    with pytest.raises(AtlasError, match="(?s)feature pages failed.*cannot be built"):
        build_site(atlas, tmp_path / "site", workers=2)
    assert not (tmp_path / "site").exists()  # nothing half-built is left in its place
