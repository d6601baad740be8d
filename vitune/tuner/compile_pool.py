"""Compile a batch of trials' kernels in parallel, ahead of timing them one by one.

A trial's time is mostly Triton compiling the config (seconds), while measuring it takes a
fraction of a second of GPU time. Compiling needs CPU cores, not the GPU, so a batch of
configs is compiled at once in isolated processes (a compiler crash costs one trial), filling
Triton's on-disk cache; the timing worker then loads each binary instead of compiling it.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor

from vitune.tuner.isolation import IsolatedWorker, Outcome
from vitune.tuner.trial import WARM_UP, TrialRequest


def default_compile_jobs(searchers: int = 1) -> int:
    """Compile processes per search process: the CPU cores less two per search process (its
    timing worker and its loop), shared among them, at most 16 each. More oversubscribe
    the cores: with 16 each, two search processes on 32 cores compiled a round 0.5 s and
    timed it 0.2 s slower than one alone (2 x H200, docs/perf-notes.md)."""
    return max(1, min(16, ((os.cpu_count() or 2) - 2 * searchers) // searchers))


class CompilePool:
    """`jobs` compile processes; `submit` and `compile` take at most `jobs` requests."""

    def __init__(self, jobs: int, env: dict[str, str] | None = None,
                 timeout_s: float = 300, fork_first: bool = False) -> None:
        """`fork_first`: as IsolatedWorker's, for every compile process."""
        self.jobs = jobs
        self._timeout_s = timeout_s
        # started now, so their imports and CUDA start-up overlap the caller's own
        self._workers = [IsolatedWorker("vitune.tuner.trial:precompile", env, WARM_UP,
                                        fork_first=fork_first)
                         for _ in range(jobs)]
        for worker in self._workers:
            worker.start()
        self._threads = ThreadPoolExecutor(jobs)

    def submit(self, requests: list[TrialRequest]) -> list[Future[Outcome]]:
        """Start compiling every request at once; each future is done when its compile is,
        so a caller can time the first configs while the rest still compile."""
        if len(requests) > self.jobs:
            raise ValueError(f"{len(requests)} requests for {self.jobs} compile processes")
        # Request i goes to worker i: each worker serves one thread at a time.
        return [self._threads.submit(self._workers[i].call, request, self._timeout_s)
                for i, request in enumerate(requests)]

    def compile(self, requests: list[TrialRequest]) -> list[Outcome]:
        return [future.result() for future in self.submit(requests)]

    def close(self) -> None:
        # (compiles still running are abandoned: their workers are killed, which ends the
        # threads waiting on them)
        self._threads.shutdown(wait=False, cancel_futures=True)
        for worker in self._workers:
            worker.stop()  # (all at once: each has a CUDA context to tear down)
        for worker in self._workers:
            worker.close()

    def __enter__(self) -> CompilePool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
