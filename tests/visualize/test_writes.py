"""Chunks written behind the optimization (``pipeline.visualize.writes``): in order, none
after a failed one, every failure raised, the files those of a write in line."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from pipeline.store import AtlasStore
from pipeline.visualize.writes import BackgroundWrites


def test_writes_run_in_order_on_another_thread():
    seen = []

    def write(i, pool):
        seen.append((i, threading.current_thread() is not threading.main_thread()))

    with BackgroundWrites(threads=2, pending=2) as writes:
        for i in range(6):
            writes.submit(write, i)
    assert seen == [(i, True) for i in range(6)]


def test_a_failed_write_stops_the_ones_after_it_and_is_raised():
    seen, gate = [], threading.Event()

    def write(i, pool):
        gate.wait(5)  # every write is handed over before the first runs
        if i == 1:
            raise OSError("disk full")
        seen.append(i)

    writes = BackgroundWrites(threads=1, pending=4)
    for i in range(4):
        writes.submit(write, i)
    gate.set()
    with pytest.raises(OSError, match="disk full"):
        writes.close()
    assert seen == [0]  # 2 and 3 were handed over after 1, so not written


def test_the_blocks_own_error_wins_and_handed_over_writes_finish():
    seen = []
    with pytest.raises(KeyboardInterrupt), BackgroundWrites(threads=1) as writes:
        writes.submit(lambda pool: seen.append("written"))
        raise KeyboardInterrupt
    assert seen == ["written"]


def test_chunk_files_are_the_same_bytes_with_a_pool(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(5)]
    maps = [rng.integers(0, 256, (16, 16), dtype=np.uint8) for _ in range(5)]
    stores = {}
    for name, threads in (("inline", None), ("pool", 3)):
        store = AtlasStore(tmp_path / name)
        results = [{"unit": u, "activation": 1.0} for u in range(5)]
        if threads is None:
            store.write_vis_chunk(0, 0, {"name": "r"}, results, images, maps)
        else:
            with BackgroundWrites(threads=threads) as writes:
                writes.submit(store.write_vis_chunk, 0, 0, {"name": "r"}, results, images, maps)
        stores[name] = store.vis_dir(0, "r")
    files = sorted(p.name for p in stores["inline"].iterdir())
    assert len(files) == 5 * 4 + 1  # image and map, each PNG and AVIF; the chunk JSON
    assert files == sorted(p.name for p in stores["pool"].iterdir())
    for name in files:
        assert (stores["inline"] / name).read_bytes() == (stores["pool"] / name).read_bytes()
