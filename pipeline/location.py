"""Where a site's files live: a local folder, or an HTTP(S) base URL (``http_location``).

The site reader (``pipeline.reader``) reads every file through a ``Location``, so a folder on
disk and a published site on a web server are read by one code path. Paths are the site's
relative paths (``pipeline.site.urls``), always with ``/``.

>>> import tempfile
>>> here = LocalFolder(Path(tempfile.mkdtemp()))
>>> _ = (here.path / "models.json").write_text('{"models": []}')
>>> here.read_json("models.json"), here.read_json("versions.json")
({'models': []}, None)
>>> here.child("1.0").name, here.child("1.0").parent().path == here.path
('1.0', True)
"""

from __future__ import annotations

import contextlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from pipeline.errors import AtlasError


def is_url(path: str | Path) -> bool:
    """Whether ``path`` is an ``http://`` or ``https://`` address.

    >>> is_url("https://example.org/atlas/1.1/"), is_url("atlas-demo/site")
    (True, False)
    """
    return isinstance(path, str) and path.lower().startswith(("http://", "https://"))


class Location(ABC):
    """A folder of a site's files, wherever it lives."""

    @property
    @abstractmethod
    def name(self) -> str:
        """The folder's own name (a version or an alias, in a publishing root)."""

    @abstractmethod
    def address(self, rel: str = "") -> str:
        """Where ``rel`` is, as a message names it (a path or a URL)."""

    @abstractmethod
    def read_bytes(self, rel: str) -> bytes | None:
        """The bytes of ``rel``; ``None`` if there is no such file. Other failures (a host
        out of reach, an HTTP error) are an ``AtlasError`` naming the address."""

    @abstractmethod
    def child(self, rel: str) -> Location:
        """The folder ``rel`` inside this one."""

    @abstractmethod
    def parent(self) -> Location | None:
        """The folder above this one, ``None`` at the top."""

    @abstractmethod
    def open(self, rel: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """``rel`` as a seekable binary file for the block's duration, read in pieces as the
        reader asks (byte ranges over HTTP); ``FileNotFoundError`` if there is none."""

    def read_json(self, rel: str) -> Any:
        """``rel`` parsed as JSON; ``None`` if there is no such file."""
        data = self.read_bytes(rel)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError as exc:
            raise AtlasError(f"{self.address(rel)} is not JSON: {exc}") from None

    def __str__(self) -> str:
        return self.address()


class LocalFolder(Location):
    """A folder on disk."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def name(self) -> str:
        return Path(os.path.abspath(self.path)).name

    def address(self, rel: str = "") -> str:
        return str(self.path / rel) if rel else str(self.path)

    def read_bytes(self, rel: str) -> bytes | None:
        path = self.path / rel
        return path.read_bytes() if path.is_file() else None

    def child(self, rel: str) -> LocalFolder:
        return LocalFolder(self.path / rel)

    def parent(self) -> LocalFolder | None:
        here = Path(os.path.abspath(self.path))  # the folder above the name, links not followed
        return None if here.parent == here else LocalFolder(here.parent)

    @contextlib.contextmanager
    def open(self, rel: str) -> Iterator[BinaryIO]:
        with (self.path / rel).open("rb") as f:
            yield f
