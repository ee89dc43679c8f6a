"""One exception type for every user-facing failure: the CLI prints its message, no traceback."""


class AtlasError(Exception):
    """A problem with the user's input or environment, explained in the message."""
