"""Run one function over many items, in worker processes or threads, with a progress bar."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, ProcessPoolExecutor, ThreadPoolExecutor, wait
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def _exit_with_parent() -> None:
    """Worker initializer: end this worker as soon as the process that started it is gone.

    A SIGKILLed parent cannot shut its pool down, and its workers would finish the queued items and then
    block forever on the pool's pipe (they hold its write end themselves, so they never see it close). Every
    ``spawn`` child holds a sentinel that becomes ready when its parent exits
    (``multiprocessing.parent_process().sentinel``, a pipe on POSIX, the process handle on Windows): a daemon
    thread waits on it and exits at once. Portable, no polling, no race: a parent already gone is seen at once.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)  # no cleanup to run: partial files are removed by the next run (their pid is gone)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def parallel_map(fn: Callable[[T], R], items: Sequence[T], *, jobs: int = 1, desc: str = "",
                 threads: bool = False, unit: str = "file") -> Iterator[R]:
    """Yield ``fn(item)`` for every item, in completion order, with a tqdm bar on stderr.

    ``jobs <= 1`` runs in this process (easy to debug). Otherwise a pool of ``jobs`` workers is used:
    processes (``spawn``, safe whatever the parent imported) for CPU work, threads for work that waits on
    subprocesses. At most ``2 * jobs`` items are in flight, so huge item lists cost no memory. On Ctrl-C
    queued items are cancelled and the KeyboardInterrupt propagates. Worker processes exit when this process
    dies, also by SIGKILL.

    Args:
        fn: picklable (top-level) function when processes are used.
        items: the work list.
        jobs: number of workers.
        desc: progress-bar label.
        threads: use threads instead of processes.
        unit: progress-bar unit.
    """
    bar = tqdm(total=len(items), desc=desc, unit=unit, disable=None, leave=False)
    try:
        if jobs <= 1 or len(items) <= 1:
            for item in items:
                yield fn(item)
                bar.update()
            return
        workers = min(jobs, len(items))
        pool: Executor = (ThreadPoolExecutor(workers) if threads else
                          ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                              initializer=_exit_with_parent))
        try:
            queue = iter(items)
            # range first: zip must not pull (and drop) an item from the queue once the range is exhausted
            pending = {pool.submit(fn, item) for _, item in zip(range(2 * workers), queue)}
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield future.result()
                    bar.update()
                    for item in queue:  # refill one slot
                        pending.add(pool.submit(fn, item))
                        break
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    finally:
        bar.close()
