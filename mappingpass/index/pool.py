"""The one worker pool: the index's extraction, precise mode's libclang
parses and review's extraction of file versions all run through `run`.

Workers are forked (the parent's imports come along), set up once by an
initializer, and ignore ^C, which is the parent's to report in one line.
Few items, or one job, run in this process: no fork for nothing.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def _start(initializer: Callable[..., None], initargs: tuple) -> None:
    if multiprocessing.parent_process() is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # (the parent's handler is not a worker's)
    initializer(*initargs)


def run(work: Callable[[Any], Any], items: Iterable[Any], *, jobs: int,
        initializer: Callable[..., None], initargs: tuple = (), serial_below: int = 8,
        chunksize: int = 1, ordered: bool = False, maxtasksperchild: int | None = None) -> Iterator[Any]:
    """work(item) for every item, results yielded as they come (in items'
    order with ordered=True). maxtasksperchild: a fresh process every so
    many items, for a library that does not give its memory back."""
    items = list(items)
    if jobs <= 1 or len(items) < serial_below:
        initializer(*initargs)
        for item in items:
            yield work(item)
        return
    ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    with ctx.Pool(min(jobs, len(items)), initializer=_start, initargs=(initializer, initargs),
                  maxtasksperchild=maxtasksperchild) as pool:
        results = pool.imap(work, items, chunksize) if ordered else pool.imap_unordered(work, items, chunksize)
        yield from results
