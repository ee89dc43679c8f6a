"""`vit-atlas serve`: a client that goes away mid-answer (a browser cancelling a lazy image)
ends that answer quietly, without a traceback, and the server goes on serving."""
from __future__ import annotations

import socket
import struct
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pipeline.site import serving
from pipeline.site.serve import Request


def _abandon(base: str, path: str, headers: str = "") -> None:
    """Ask for ``path``, read a little, and reset the connection (SO_LINGER 0: an RST)."""
    where = urlsplit(base)
    with socket.create_connection((where.hostname, where.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
        sock.recv(1024)


@pytest.mark.parametrize("headers", ["", "Range: bytes=10-\r\n"], ids=["whole", "range"])
def test_a_client_that_goes_away_leaves_no_traceback(tmp_path: Path, capfd, headers):
    (tmp_path / "big.bin").write_bytes(bytes(32 * 1024 * 1024))
    (tmp_path / "a.txt").write_text("hello")
    seen: list[Request] = []
    with serving(tmp_path, log=seen) as base:
        _abandon(base, "/big.bin", headers)
        assert urllib.request.urlopen(f"{base}/a.txt").read() == b"hello"
    err = capfd.readouterr().err  # the server is closed: its answering threads have ended
    assert seen[0].path == "/big.bin" and seen[0].status in (200, 206)
    assert "Traceback" not in err and "BrokenPipe" not in err and "ConnectionReset" not in err


def test_site_files_are_served_with_their_types(tmp_path: Path):
    """The site's images are AVIF: served as image/avif whatever Python's own table knows
    (3.10's has no .avif), as the data files are JSON."""
    for name in ("e1.avif", "feature.json", "atlas.js", "icon.svg"):
        (tmp_path / name).write_bytes(b"x")
    with serving(tmp_path) as base:
        types = {n: urllib.request.urlopen(f"{base}/{n}").headers["Content-Type"]
                 for n in ("e1.avif", "feature.json", "atlas.js", "icon.svg")}
    assert types == {"e1.avif": "image/avif", "feature.json": "application/json",
                     "atlas.js": "text/javascript", "icon.svg": "image/svg+xml"}
