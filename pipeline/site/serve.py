"""Serve a built site with the standard library (the site is plain static files).

The handler answers single byte-range requests (``Range: bytes=a-b``, ``a-``, ``-n``) with
``206 Partial Content``, as static hosts do, so a Parquet export is read in ranges over it
(``pipeline.open(url).table``); ``ranges=False`` serves whole files only, like a host that
ignores ``Range``. ``log=`` collects one ``Request`` per request (what a test counts).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass(frozen=True)
class Request:
    """One request as served: ``sent`` counts the body's bytes."""

    method: str
    path: str
    range: str | None
    status: int
    sent: int


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive ``(first, last)`` byte of a single-range ``Range`` header on a file of
    ``size`` bytes; ``None`` for a header to ignore (malformed, several ranges), ``(0, -1)``
    for a range that lies outside the file (416).

    >>> byte_range("bytes=10-19", 100), byte_range("bytes=90-", 100), byte_range("bytes=-8", 100)
    ((10, 19), (90, 99), (92, 99))
    >>> byte_range("bytes=0-5,10-15", 100), byte_range("bytes=200-", 100)
    (None, (0, -1))
    """
    match = _RANGE.fullmatch(header.strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if not first:  # the last n bytes
        n = int(last)
        return (max(size - n, 0), size - 1) if n and size else (0, -1)
    start, end = int(first), min(int(last), size - 1) if last else size - 1
    if last and int(last) < start:
        return None
    return (start, end) if start < size else (0, -1)


class QuietHandler(SimpleHTTPRequestHandler):
    """Static files from one directory, without a log line per request, with byte ranges."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".json": "application/json",
                      ".js": "text/javascript", ".svg": "image/svg+xml",
                      ".avif": "image/avif"}  # the site's images; unknown to Python 3.10

    def __init__(self, *args: Any, ranges: bool = True, log: list[Request] | None = None,
                 **kwargs: Any) -> None:
        self.ranges, self.log = ranges, log  # set first: the base class serves in __init__
        self._span: int | None = None
        self._status, self._length = 0, 0
        super().__init__(*args, **kwargs)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self._status = int(code) if str(code).isdigit() else 0

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "content-length":
            self._length = int(value)
        super().send_header(keyword, value)

    def end_headers(self) -> None:
        """Logged here, before the body: a client that has read it finds it logged."""
        if self.ranges:
            self.send_header("Accept-Ranges", "bytes")
        if self.log is not None:
            sent = self._length if self.command == "GET" else 0
            self.log.append(Request(self.command, self.path, self.headers.get("Range"),
                                    self._status, sent))
        super().end_headers()

    def send_head(self) -> BinaryIO | None:
        self._span, self._length = None, 0
        header = self.headers.get("Range") if self.ranges else None
        path = self.translate_path(self.path)
        if not header or self.path.split("?")[0].endswith("/") or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        span = byte_range(header, size)
        if span is None:  # as RFC 9110 allows: the whole file
            return super().send_head()
        first, last = span
        if last < first:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        f = open(path, "rb")  # noqa: SIM115 - closed by do_GET/do_HEAD
        f.seek(first)
        self.send_response(HTTPStatus.PARTIAL_CONTENT)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Content-Length", str(last - first + 1))
        self.end_headers()
        self._span = last - first + 1
        return f

    def copyfile(self, source: Any, outputfile: Any) -> None:
        """Send the file, or its range; a client that went away meanwhile (a browser
        cancelling a lazy image, a reader closing the tab) ends the answer quietly, not with
        a traceback on the server's terminal."""
        try:
            if self._span is None:
                return super().copyfile(source, outputfile)
            left = self._span
            while left > 0 and (chunk := source.read(min(left, 64 * 1024))):
                outputfile.write(chunk)
                left -= len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        return None


def make_server(site_dir: Path, host: str = "127.0.0.1", port: int = 8000, *,
                ranges: bool = True, log: list[Request] | None = None) -> ThreadingHTTPServer:
    """An HTTP server of ``site_dir`` (``port=0``: an ephemeral port); ``ranges``: answer
    byte-range requests; ``log``: a list that gets a ``Request`` per request served."""
    handler = functools.partial(QuietHandler, directory=str(site_dir), ranges=ranges, log=log)
    return ThreadingHTTPServer((host, port), handler)


@contextlib.contextmanager
def serving(site_dir: Path, host: str = "127.0.0.1", port: int = 0, *, ranges: bool = True,
            log: list[Request] | None = None) -> Iterator[str]:
    """Serve ``site_dir`` from a background thread while the block runs; yields its base URL
    (no trailing ``/``). ``ranges`` and ``log``: as ``make_server``'s.

    >>> import tempfile, urllib.request
    >>> root = Path(tempfile.mkdtemp()); _ = (root / "a.txt").write_text("hello")
    >>> seen = []
    >>> with serving(root, log=seen) as base:
    ...     whole = urllib.request.urlopen(f"{base}/a.txt").read()
    ...     ask = urllib.request.Request(f"{base}/a.txt", headers={"Range": "bytes=1-3"})
    ...     part = urllib.request.urlopen(ask)
    >>> whole, part.status, part.read(), [(r.status, r.sent) for r in seen]
    (b'hello', 206, b'ell', [(200, 5), (206, 3)])
    """
    with running(make_server(Path(site_dir), host, port, ranges=ranges, log=log)) as base:
        yield base


@contextlib.contextmanager
def running(server: ThreadingHTTPServer) -> Iterator[str]:
    """Run ``server`` from a background thread while the block runs; yields its base URL (no
    trailing ``/``), and shuts it down and closes it after.

    >>> import urllib.request
    >>> from http.server import SimpleHTTPRequestHandler
    >>> with running(ThreadingHTTPServer(("127.0.0.1", 0), SimpleHTTPRequestHandler)) as base:
    ...     base.startswith("http://127.0.0.1:")
    True
    """
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{server.server_address[0]}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def serve(site_dir: Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``site_dir`` until interrupted, printing its URL."""
    with make_server(Path(site_dir), host, port) as server:
        h, p = server.server_address[:2]
        print(f"Serving {site_dir} at http://{h}:{p}/ (Ctrl+C to stop)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("stopped")
