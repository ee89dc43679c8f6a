"""Serve a built site with the standard library (the site is plain static files)."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class QuietHandler(SimpleHTTPRequestHandler):
    """Static files from one directory, without a log line per request."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".json": "application/json",
                      ".js": "text/javascript", ".svg": "image/svg+xml"}

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def make_server(site_dir: Path, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """An HTTP server of ``site_dir`` (``port=0``: an ephemeral port)."""
    handler = functools.partial(QuietHandler, directory=str(site_dir))
    return ThreadingHTTPServer((host, port), handler)


@contextlib.contextmanager
def serving(site_dir: Path, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``site_dir`` from a background thread while the block runs; yields its base URL
    (no trailing ``/``).

    >>> import tempfile, urllib.request
    >>> root = Path(tempfile.mkdtemp()); _ = (root / "a.txt").write_text("hi")
    >>> with serving(root) as base:
    ...     urllib.request.urlopen(f"{base}/a.txt").read()
    b'hi'
    """
    server = make_server(Path(site_dir), host, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
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
