"""Chunk files written behind the optimization.

Encoding a chunk's images for the site (AVIF, ``store.display_bytes``) takes some 5 ms an
image at 64 pixels and 50 ms at 224 on one core, two or three times per feature (its image,
its attribution map, a second quality tried): on a GPU that is more than the optimization
itself, with the CPU's other cores idle. So the visualize stage hands each finished batch's
chunks to ``BackgroundWrites`` as one write: one thread writes them in order, their images
encoded by a pool of threads (libavif and zlib release the GIL), while the next batch is
optimized. At most ``pending`` batches wait, so memory stays bounded; a failed write fails
the stage at the next hand-over or at the end, and its chunk, never marked finished, is
redone by a rerun. The files are the same bytes as written in line.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any


def encode_threads() -> int:
    """Threads for encoding images: the CPUs this process may use, shared among the
    processes that torchrun started on this machine (``LOCAL_WORLD_SIZE``); at least 1.

    >>> encode_threads() >= 1
    True
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cpus or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1))))


class BackgroundWrites:
    """Run ``write(*args, pool=encoders, **kwargs)`` calls in order on one thread, at most
    ``pending`` waiting, none after one that failed; ``close`` (or leaving the ``with``
    block) waits for all and raises the first failure.

    >>> done = []
    >>> with BackgroundWrites(threads=2) as writes:
    ...     for i in range(3):
    ...         writes.submit(lambda i, pool: done.append(i), i)
    >>> done
    [0, 1, 2]
    """

    def __init__(self, threads: int | None = None, pending: int = 2):
        self.encoders = ThreadPoolExecutor(threads or encode_threads(),
                                           thread_name_prefix="atlas-encode")
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="atlas-chunks")
        self.pending = pending
        self.queue: deque[Future] = deque()
        self.failed = False

    def submit(self, write: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        while len(self.queue) >= self.pending:
            self.queue.popleft().result()
        self.queue.append(self.writer.submit(self._write, write, args,
                                             {**kwargs, "pool": self.encoders}))

    def _write(self, write: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
        """One write, unless one before it failed: the writes stop where the first failed,
        as they would in line (a chunk after a failed one is not written)."""
        if self.failed:
            raise RuntimeError("not written: an earlier chunk's write failed")
        try:
            return write(*args, **kwargs)
        except BaseException:
            self.failed = True
            raise

    def close(self) -> None:
        try:
            while self.queue:
                self.queue.popleft().result()
        finally:
            self.writer.shutdown(wait=True, cancel_futures=True)
            self.encoders.shutdown(wait=True)

    def __enter__(self) -> BackgroundWrites:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if error is None:
            self.close()
            return
        # failing already: the writes handed over finish (finished work a rerun keeps), and
        # the original error is the one raised
        with contextlib.suppress(Exception):  # the first error wins
            self.close()
