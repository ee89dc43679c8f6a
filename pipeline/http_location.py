"""A site's files at an HTTP(S) base URL: ``HttpLocation``, read with fsspec's
``HTTPFileSystem`` (aiohttp underneath).

Small files (``models.json``, ``feature.json``) are read whole; ``open`` gives a file that
fetches only the byte ranges its reader asks for (``Range`` requests, one per read, no
read-ahead), which is how ``pyarrow.parquet`` reads the columns and row groups it needs of the
Parquet export. A server that ignores ``Range`` (it answers ``200`` with the whole file) is
detected on the first, 8-byte request: the file is then read whole, once, with a
``RangesIgnored`` warning, so a table still comes back. Nothing is fetched before a call asks.

>>> from pipeline.site import serving
>>> import tempfile
>>> from pathlib import Path
>>> root = Path(tempfile.mkdtemp()); _ = (root / "models.json").write_text('{"models": []}')
>>> with serving(root) as base:
...     site = HttpLocation(base + "/")
...     site.read_json("models.json"), site.read_json("versions.json")
({'models': []}, None)
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import Iterator
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

from pipeline.errors import AtlasError
from pipeline.location import Location

CONNECT_TIMEOUT_S = 15  # to open a connection
READ_TIMEOUT_S = 60  # between two reads of a response's bytes
_TAIL = 8  # a Parquet file ends in its footer's length and "PAR1"


class RangesIgnored(UserWarning):
    """A server answered a byte-range request with the whole file."""


class HttpLocation(Location):
    """The folder at ``url`` (an ``http://`` or ``https://`` address; a ``/`` is added)."""

    def __init__(self, url: str, fs: Any = None):
        self.url = url if url.endswith("/") else url + "/"
        self._fs = fs if fs is not None else _filesystem()

    @property
    def name(self) -> str:
        return urlsplit(self.url).path.rstrip("/").rsplit("/", 1)[-1]

    def address(self, rel: str = "") -> str:
        return urljoin(self.url, rel)

    def read_bytes(self, rel: str) -> bytes | None:
        url = self.address(rel)
        with _errors(url):
            try:
                return self._fs.cat_file(url)
            except FileNotFoundError:
                return None

    def child(self, rel: str) -> HttpLocation:
        return HttpLocation(self.address(rel.rstrip("/") + "/"), self._fs)

    def parent(self) -> HttpLocation | None:
        if urlsplit(self.url).path in ("", "/"):
            return None
        return HttpLocation(urljoin(self.url, ".."), self._fs)

    @contextlib.contextmanager
    def open(self, rel: str) -> Iterator[BinaryIO]:
        """``rel`` read in byte ranges (see the module); the file's size comes from a
        ``HEAD`` request.

        >>> from pipeline.site import serving
        >>> import tempfile
        >>> from pathlib import Path
        >>> root = Path(tempfile.mkdtemp()); _ = (root / "f.bin").write_bytes(b"0123456789" * 10)
        >>> seen = []
        >>> with serving(root, log=seen) as base, HttpLocation(base).open("f.bin") as f:
        ...     _ = f.seek(91); f.read(3)
        b'123'
        >>> [(r.method, r.range, r.sent) for r in seen][-1]
        ('GET', 'bytes=91-93', 3)
        """
        import pyarrow as pa

        url = self.address(rel)
        with _errors(url):
            size = self._fs.size(url)  # FileNotFoundError on a 404
            tail = self._fs.cat_file(url, start=max(size - _TAIL, 0), end=size) if size else b""
            if size is None or len(tail) > _TAIL:  # no size, or the whole file came back
                data = tail if size is not None else self._fs.cat_file(url)
                warnings.warn(f"{url}: the server does not answer byte-range requests "
                              f"(it sent the whole file, {len(data):,} bytes); read whole",
                              RangesIgnored, stacklevel=3)
                yield pa.BufferReader(data)
                return
            with self._fs.open(url, "rb", block_size=2**20, cache_type="none",
                               size=size) as f:
                yield f


def _filesystem() -> Any:
    """An fsspec ``HTTPFileSystem`` with this module's timeouts (imported here: reading a local
    atlas never loads aiohttp)."""
    import aiohttp
    from fsspec.implementations.http import HTTPFileSystem

    timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S,
                                    sock_read=READ_TIMEOUT_S)
    return HTTPFileSystem(client_kwargs={"timeout": timeout})


@contextlib.contextmanager
def _errors(url: str) -> Iterator[None]:
    """Failures of the network or the server, as an ``AtlasError`` naming ``url``
    (``FileNotFoundError``, a 404, passes through: the caller says what was missing)."""
    import aiohttp

    try:
        yield
    except FileNotFoundError:
        raise
    except aiohttp.ClientResponseError as exc:
        raise AtlasError(f"{url}: HTTP {exc.status} {exc.message}") from None
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise AtlasError(f"cannot reach {url}: {exc or type(exc).__name__}") from None
