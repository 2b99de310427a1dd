"""One pool of worker threads for the NumPy backend's kernels.

A convolution, a pooling layer or a ReLU over a batch splits into *tiles* (a few
images, a band of output rows, a block of channels) that need no other tile's
result. :func:`run_tiles` hands the tiles to a pool of worker threads, one per core,
and each worker does all the work of its tile: the im2col copy, the matrix product,
the bias, the fold back into an image. The tile's data is still in that core's
cache when the next step reads it.

While the pool runs, BLAS itself runs single-threaded: every core already has a
worker calling it. Left to itself, OpenBLAS would start its own threads for every
product and keep them spinning between calls, and two thread pools on the same
cores wait for each other (see the performance chapter: 8 ms stalls on 2 cores).
One pool, ours, owns the cores; ``threadpoolctl`` is how we tell BLAS so, and the
previous setting comes back when the tiles are done.

Works because NumPy's matrix products and copies, and the package's Numba loops
(compiled with ``nogil=True``), release Python's global interpreter lock.

Some layers still call BLAS with its own threads (one large product). After such a
call OpenBLAS keeps its threads spinning, by default for about 0.1 s, and the workers
here would share the cores with them; importing the package sets
``OPENBLAS_THREAD_TIMEOUT`` (unless it is set) so that they sleep after tens of
microseconds instead. OpenBLAS reads it when it is loaded: import the package before
NumPy for it to apply (``overfeat_scratch.BLAS_THREAD_TIMEOUT``; the performance
chapter has the measurements).

``OVERFEAT_THREADS`` (environment) or :func:`set_workers` sets the number of
workers; 1 runs every tile in the calling thread, in order. Results never depend
on the number of workers: the tiles depend on the shapes only, each tile writes
its own part of the output with single-threaded BLAS, and partial sums (a weight
gradient over groups of images) are added in tile order.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..common.checks import InputError


def _default_workers() -> int:
    text = os.environ.get("OVERFEAT_THREADS", "").strip()
    if text:
        if not text.isdigit() or int(text) < 1:
            raise InputError(f"OVERFEAT_THREADS must be a positive integer, got {text!r}")
        return int(text)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_state = {"workers": None, "pool": None, "blas": None}
_lock = threading.Lock()
_inside = threading.local()


def workers() -> int:
    """How many worker threads :func:`run_tiles` uses."""
    if _state["workers"] is None:
        _state["workers"] = _default_workers()
    return _state["workers"]


def set_workers(count: int) -> None:
    """Use ``count`` worker threads from now on (1: no threads at all)."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise InputError(f"set_workers: expected a positive integer, got {count!r}")
    with _lock:
        if _state["pool"] is not None:
            _state["pool"].shutdown(wait=True)
        _state["workers"], _state["pool"] = count, None


def _pool() -> ThreadPoolExecutor:
    with _lock:
        if _state["pool"] is None:
            # The calling thread works too: the pool holds the other workers.
            _state["pool"] = ThreadPoolExecutor(
                max(1, workers() - 1), thread_name_prefix="overfeat"
            )
        return _state["pool"]


def _blas_controllers():
    """threadpoolctl's handles on the BLAS libraries loaded in this process (once)."""
    if _state["blas"] is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - a dependency; tolerate its absence
            _state["blas"] = []
        else:
            controller = ThreadpoolController().select(user_api="blas")
            _state["blas"] = list(controller.lib_controllers)
    return _state["blas"]


class _SingleThreadedBlas:
    """``with _SingleThreadedBlas():`` BLAS uses one thread; the old count comes back."""

    def __enter__(self):
        self.saved = []
        for lib in _blas_controllers():
            self.saved.append((lib, lib.get_num_threads()))
            lib.set_num_threads(1)

    def __exit__(self, *exc):
        for lib, count in self.saved:
            lib.set_num_threads(count)


def run_tiles(job: Callable, tiles: Sequence) -> list:
    """``[job(tile) for tile in tiles]``, the tiles shared among the workers.

    The calling thread is one of the workers; each worker takes the next tile not
    yet taken until none is left (so a core slowed by another program simply does
    fewer tiles). Runs everything in the calling thread when there is one worker or
    one tile, and when called from inside a tile (no nested pools). The results
    come back in the order of ``tiles``; the first exception raised by a tile is
    raised here, after every worker has stopped.
    """
    tiles = list(tiles)
    count = min(workers(), len(tiles))
    if getattr(_inside, "active", False):
        return [job(tile) for tile in tiles]
    if count <= 1:
        # Single-threaded BLAS here too: a tile's bits never depend on the workers.
        with _SingleThreadedBlas():
            return [job(tile) for tile in tiles]
    results = [None] * len(tiles)
    claim = itertools.count()  # next() on it is atomic under the interpreter lock
    # NumPy's floating-point error settings belong to a thread: the caller's apply
    # in every worker (a caller that silenced overflow warnings gets none).
    errors = np.geterr()

    def share():
        _inside.active = True
        try:
            with np.errstate(**errors):
                for index in iter(claim.__next__, None):
                    if index >= len(tiles):
                        return
                    results[index] = job(tiles[index])
        finally:
            _inside.active = False

    with _SingleThreadedBlas():
        helpers = [_pool().submit(share) for _ in range(count - 1)]
        try:
            share()
        finally:
            errors = [f.exception() for f in helpers]
    for error in errors:
        if error is not None:
            raise error
    return results


def split(count: int, parts: int, minimum: int = 1) -> list[tuple[int, int]]:
    """``count`` items cut into at most ``parts`` ranges ``(start, stop)`` of nearly
    equal size, none shorter than ``minimum`` (unless ``count`` itself is)."""
    parts = max(1, min(parts, count // max(1, minimum)))
    bounds = [count * k // parts for k in range(parts + 1)]
    return [(bounds[k], bounds[k + 1]) for k in range(parts) if bounds[k + 1] > bounds[k]]


# Work cut into several tiles is cut into a multiple of this many, where the items
# allow: two workers (or four) then get equal shares. 13 equal tiles on two workers
# leave one idle while the other does the 13th (mini's conv2 at batch 128: 14 tiles
# instead, 7% faster). The count depends on the sizes only, never on the workers, so
# results summed over tiles are the same bits with any number of workers.
TILE_COUNT_MULTIPLE = 2


def tile_count(parts: int, repeats: int = 1) -> int:
    """``parts`` raised, where there are several, until the tiles, ``repeats`` times
    ``parts`` of them (the parts of each of several images), are a multiple of
    :data:`TILE_COUNT_MULTIPLE`."""
    if parts > 1:
        while repeats * parts % TILE_COUNT_MULTIPLE:
            parts += 1
    return parts


def blocks(count: int, most: int) -> list[tuple[int, int]]:
    """``count`` items in nearly equal ranges of at most ``most``: as few as that
    allows, rounded up to a multiple of :data:`TILE_COUNT_MULTIPLE` where there are
    several (:func:`tile_count`)."""
    return split(count, tile_count(-(-count // max(1, most))))
