"""One exception type for every user-facing failure: the CLI prints its message, no traceback."""

from __future__ import annotations


class AtlasError(Exception):
    """A problem with the user's input or environment, explained in the message.

    ``option``: the configuration option at fault, when there is one (e.g. ``"split"``), by
    its option name, as ``AtlasConfig.replace`` and ``atlas.json`` spell it; the message
    itself names options the same way, never by a command-line flag (the CLI adds the flag).

    >>> err = AtlasError("topk must be at least 1, not 0", option="topk")
    >>> str(err), err.option
    ('topk must be at least 1, not 0', 'topk')
    """

    def __init__(self, message: str = "", *, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option
