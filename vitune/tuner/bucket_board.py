"""Which search process searches which bucket of a `vitune tune` run.

Each process takes a bucket nobody has started yet (in the run's order); once none is
left, it joins a bucket still being searched, so processes share only the run's tail.
Before, every process searched every bucket together with the others: each paid every
bucket's ramp (first compiles, the inputs), and each bucket's samplers picked blind to
twice as many configs in flight, trying more slow ones (2 x H200: 90-93 s of GPU work
against 84-90 s for one process; docs/decisions.md, "Two GPUs on one run").

With `together` (`vitune tune --share all`) every process takes the first open bucket
instead, so all search each bucket's study at once, one bucket after another: as before
this board, and what "two GPUs on one study" means for a single bucket anyway.

The board lives in shared memory (one lock, a few integers per bucket), so any process
claims, leaves and reports progress without asking another to answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# A bucket with fewer trials than this left is left to those on it: a process that joins
# spends its first seconds waiting for its first compiles, longer than the rest would take.
JOIN_MIN_LEFT = 16


class BucketBoard:
    """`buckets` buckets and `searchers` search processes (numbered from 0); `ctx` a
    multiprocessing context whose processes receive the board when they start."""

    def __init__(self, buckets: int, searchers: int, ctx, together: bool = False) -> None:
        self.buckets, self.together = buckets, together
        self._lock = ctx.Lock()
        self._started = ctx.RawArray("i", buckets)  # processes that ever joined a bucket
        self._active = ctx.RawArray("i", buckets)  # processes on it now
        self._closed = ctx.RawArray("b", buckets)  # one finished it: nobody joins any more
        self._ran = ctx.RawArray("i", buckets)  # progress, as last reported
        self._budget = ctx.RawArray("i", buckets)
        self._best = ctx.RawArray("d", [math.nan] * buckets)
        self._holding = ctx.RawArray("i", [-1] * searchers)  # each process's bucket

    def claim(self, searcher: int, available: int) -> Seat | None:
        """A bucket among the first `available` for `searcher`: the first nobody has
        started, else the open one with the fewest processes on it (the last started
        first) that has JOIN_MIN_LEFT trials left; together, the first open one that is
        new or has that many left. None if there is none."""
        with self._lock:
            open_ = [i for i in range(available) if not self._closed[i]]
            fresh = [i for i in open_ if not self._started[i]]
            joinable = [i for i in open_ if self._started[i] and self._worth_joining(i)]
            if self.together:
                bucket = min(fresh + joinable, default=None)
            elif fresh:
                bucket = fresh[0]
            else:
                bucket = min(joinable, key=lambda i: (self._active[i], -i), default=None)
            if bucket is None:
                return None
            rank = self._started[bucket]
            self._started[bucket] += 1
            self._active[bucket] += 1
            self._holding[searcher] = bucket
            return Seat(self, bucket, rank)

    def _worth_joining(self, bucket: int) -> bool:
        if not self._active[bucket]:  # (left unfinished: its process failed or died)
            return True
        budget = self._budget[bucket]
        return not budget or budget - self._ran[bucket] >= JOIN_MIN_LEFT

    def leave(self, searcher: int, finished: bool = True) -> None:
        """`searcher` is done with its bucket: `finished` (its search ended: the budget,
        the time or the space is used up) closes the bucket to newcomers; a failed search
        leaves it open for another process to finish."""
        with self._lock:
            bucket = self._holding[searcher]
            if bucket < 0:
                return
            self._active[bucket] -= 1
            self._holding[searcher] = -1
            if finished:
                self._closed[bucket] = 1

    def searchers(self, bucket: int) -> int:
        return self._active[bucket]

    def closed(self, bucket: int) -> bool:
        return bool(self._closed[bucket])

    def finished(self, bucket: int) -> bool:
        """Closed, and every process that was on it has left: ready to be crowned."""
        with self._lock:
            return bool(self._closed[bucket]) and not self._active[bucket]

    def report(self, bucket: int, ran: int, budget: int, best: float | None) -> None:
        self._ran[bucket], self._budget[bucket] = ran, budget
        self._best[bucket] = math.nan if best is None else best

    def progress(self, bucket: int) -> tuple[int, int, float | None]:
        """(trials that ran, budget, best TFLOP/s) as last reported; budget 0 before any."""
        best = self._best[bucket]
        return self._ran[bucket], self._budget[bucket], None if math.isnan(best) else best


@dataclass(frozen=True)
class Seat:
    """A search process's place on one bucket of a board."""

    board: BucketBoard
    bucket: int
    rank: int  # processes that had joined the bucket before this one

    def searchers(self) -> int:
        """Processes on the bucket now (this one included)."""
        return max(1, self.board.searchers(self.bucket))

    def closed(self) -> bool:
        """Another process has finished the bucket: pick no more."""
        return self.board.closed(self.bucket)

    def report(self, ran: int, budget: int, best: float | None) -> None:
        self.board.report(self.bucket, ran, budget, best)
