"""The files of a build deflated in order: on this thread for a small build, else in batches on worker threads
that may run only a little ahead of the archive being written (so their entries never pile up beside it)."""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Callable, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import Future

__all__ = ["in_order"]

T = TypeVar("T")
R = TypeVar("R")

# Files are handed to the compressing threads in batches of about this many bytes: tiny files one by one
# would cost more in thread hand-offs than in deflate.
_BATCH_BYTES = 512 * 1024
# The files the compressing threads may be working on ahead of the archive, beyond one batch per thread.
_IN_FLIGHT_BYTES = 8 * 1024 * 1024
# Below this much work a thread pool costs more than it saves.
_PARALLEL_MIN_BYTES = 2 * 1024 * 1024


def in_order(
    jobs: Sequence[T], run: Callable[[T], R], *, size: Callable[[T], int], workers: int
) -> Generator[R, None, None]:
    """``run(job)`` of each job, yielded in the jobs' order; in parallel batches when there is enough work.

    Args:
        jobs: the work, in the order its results are wanted.
        run: what to do with one job (called on a worker thread when in parallel).
        size: a job's size in bytes (batches and the in-flight bound are in bytes).
        workers: the threads to use; 1 or fewer runs everything on the calling thread.

    Closing the generator early (the archive gave up) cancels the batches not started and waits for the rest.
    """
    if workers <= 1 or sum(size(job) for job in jobs) < _PARALLEL_MIN_BYTES:
        for job in jobs:
            yield run(job)
        return
    batches: list[tuple[list[T], int]] = []
    batch: list[T] = []
    weight = raw = 0
    for job in jobs:
        batch.append(job)
        n = size(job)
        raw += n
        weight += n + 4096  # per-file cost beyond its bytes: open, stat, headers
        if weight >= _BATCH_BYTES:
            batches.append((batch, raw))
            batch, weight, raw = [], 0, 0
    if batch:
        batches.append((batch, raw))
    from concurrent.futures import ThreadPoolExecutor  # here: a small package is deflated on this thread

    def run_batch(items: Sequence[T]) -> list[R]:
        return [run(item) for item in items]

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fgsync-deflate")
    pending = deque(batches)
    # Only a few batches in flight, not all of them: the workers may not run ahead of the archive by more than
    # that, or their entries (a stored binary is as big as the file) would pile up in memory beside it. One
    # batch per worker always; more while what is in flight is under _IN_FLIGHT_BYTES of files.
    futures: deque[tuple[Future[list[R]], int]] = deque()
    in_flight = 0
    try:
        while pending or futures:
            while pending and (
                len(futures) < workers or (len(futures) < workers + 2 and in_flight + pending[0][1] <= _IN_FLIGHT_BYTES)
            ):
                batch, raw = pending.popleft()
                futures.append((pool.submit(run_batch, batch), raw))
                in_flight += raw
            future, raw = futures.popleft()
            outcomes = future.result()
            in_flight -= raw
            del future
            yield from outcomes
            del outcomes
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
