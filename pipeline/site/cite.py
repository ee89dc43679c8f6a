"""Citation of one feature page: a stable key, the permalink and a BibTeX entry."""

from __future__ import annotations

import os
import re
import time

from pipeline.site import urls

_BIBTEX_SPECIAL = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "_": r"\_", "&": r"\&", "%": r"\%",
    "$": r"\$", "#": r"\#", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


_BIBTEX_TABLE = str.maketrans(_BIBTEX_SPECIAL)


def bibtex_escape(value: str) -> str:
    r"""``value`` with BibTeX's special characters escaped, in one pass (``str.translate``).

    >>> print(bibtex_escape("a_b {c} 50% ~x^"))
    a\_b \{c\} 50\% \textasciitilde{}x\textasciicircum{}
    """
    return value.translate(_BIBTEX_TABLE)


def cite_key(slug: str, layer: urls.Layer | int, unit: int) -> str:
    """``vitatlas:<slug>:L<layer>:U<unit>`` for an FFN unit; a key, query or value channel is
    named by kind and block (``K``, ``Q``, ``V`` and the block), as its URL is, since its layer
    number depends on the kinds a build runs.

    >>> from pipeline.site.urls import LayerRef
    >>> cite_key("m", 3, 17), cite_key("m", LayerRef(9, "key", 3), 17)
    ('vitatlas:m:L3:U17', 'vitatlas:m:K3:U17')
    """
    if isinstance(layer, int) or layer.kind == urls.FFN:
        where = f"L{layer if isinstance(layer, int) else layer.index}"
    else:
        where = f"{layer.kind[0].upper()}{layer.level}"
    return re.sub(r"[^A-Za-z0-9_.:-]", "-", f"vitatlas:{slug}:{where}:U{unit}")


def build_year() -> int:
    """The year of this build (``SOURCE_DATE_EPOCH`` honoured for reproducible builds)."""
    return time.gmtime(int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))).tm_year


def is_absolute(url: str) -> bool:
    """Whether ``url`` is an absolute http(s) URL (a canonical address), not a site path.

    >>> is_absolute("https://org.github.io/atlas/m/0/3/"), is_absolute("1.0/m/0/3/")
    (True, False)
    """
    return re.match(r"^https?://[^/]", url) is not None


def bibtex(*, key: str, model: str, weights: str, layer: urls.Layer | int, module: str,
           unit: int, atlas_version: str, url: str, year: int) -> str:
    """A ``@misc`` entry naming model, weights, layer (an FFN layer by number, the key, query or
    value channels of a block by kind and block: ``urls.layer_name``), unit and atlas version;
    ``url``: the absolute permalink, or (a site without a known address) the page's path from
    the site root, which the entry says is no canonical address.

    >>> entry = bibtex(key="k", model="m", weights="w", layer=0, module="b.mlp.act", unit=3,
    ...                atlas_version="1", url="m/0/3/", year=2025)
    >>> "texttt{m/0/3/} of a ViT Feature Atlas site without a canonical address" in entry
    True
    >>> print(bibtex(key="k", model="m", weights="w", layer=urls.LayerRef(9, "key", 1),
    ...              module="b.attn.qkv", unit=3, atlas_version="1", url="m/key/1/3/",
    ...              year=2025).splitlines()[1])
      title        = {Key channel 3 of block 1 (b.attn.qkv) of {m}},
    """
    e = bibtex_escape
    where = (f"\\url{{{url}}}" if is_absolute(url) else
             f"Page \\texttt{{{e(url)}}} of a ViT Feature Atlas site without a canonical address")
    if isinstance(layer, int) or layer.kind == urls.FFN:
        number = layer if isinstance(layer, int) else layer.index
        title, named = f"Unit {unit} of FFN layer {number}", f"layer {number}, unit {unit}"
    else:
        named = urls.layer_name(layer, unit)
        title = named[0].upper() + named[1:]
    return (
        f"@misc{{{key},\n"
        f"  title        = {{{title} ({e(module)}) of {{{e(model)}}}}},\n"
        f"  author       = {{{{ViT Feature Atlas}}}},\n"
        f"  howpublished = {{{where}}},\n"
        f"  note         = {{Model {e(model)}, weights {e(weights)}, {named}; "
        f"ViT Feature Atlas version {e(atlas_version)}}},\n"
        f"  year         = {{{year}}},\n"
        f"}}"
    )
