"""Compile a batch of trials' kernels in parallel, ahead of timing them one by one.

A trial's time is mostly Triton compiling the config (seconds), while measuring it takes a
fraction of a second of GPU time. Compiling needs CPU cores, not the GPU, so a batch of
configs is compiled at once in isolated processes (a compiler crash costs one trial), filling
Triton's on-disk cache; the timing worker then loads each binary instead of compiling it.
The compile processes never see the GPU (vitune.kernels.compile_only): no CUDA context to
make at the start, hold all run and tear down at the end.
"""

from __future__ import annotations

import contextlib
import os
import queue
from concurrent.futures import Future, ThreadPoolExecutor

from vitune.tuner.isolation import IsolatedWorker, Outcome
from vitune.tuner.trial import (
    COMPILE_FOR,
    WARM_UP,
    WARM_UP_COMPILER,
    WARM_UP_PEERS,
    TrialRequest,
)


def default_compile_jobs(searchers: int = 1) -> int:
    """Compile processes per search process: the CPU cores less two per search process (its
    timing worker and its loop), shared among them, at most 16 each. More oversubscribe
    the cores: with 16 each, two search processes on 32 cores compiled a round 0.5 s and
    timed it 0.2 s slower than one alone (2 x H200, docs/decisions.md)."""
    return max(1, min(16, ((os.cpu_count() or 2) - 2 * searchers) // searchers))


def compiler_env(env: dict[str, str], capability: tuple[int, int]) -> dict[str, str]:
    """A compile process's environment: the timing worker's, with the GPU hidden (nothing
    there may start CUDA) and the capability to compile for named instead."""
    major, minor = capability
    return {**env, "CUDA_VISIBLE_DEVICES": "", COMPILE_FOR: f"{major}.{minor}"}


class CompilePool:
    """`jobs` compile processes; requests beyond them wait for the first to be free."""

    def __init__(self, jobs: int, capability: tuple[int, int],
                 env: dict[str, str] | None = None, timeout_s: float = 300,
                 fork_first: bool = False) -> None:
        """Compiles for GPUs of compute `capability` (e.g. (9, 0)); `env` is the timing
        worker's (its Triton cache is theirs); `fork_first`: as IsolatedWorker's."""
        self.jobs = jobs
        self._timeout_s = timeout_s
        # started now, so their imports and first compile overlap the caller's own start
        self._workers = [IsolatedWorker("vitune.tuner.trial:precompile",
                                        compiler_env(env or {}, capability), WARM_UP_COMPILER,
                                        fork_first=fork_first)
                         for _ in range(jobs)]
        self._idle: queue.SimpleQueue[IsolatedWorker] = queue.SimpleQueue()
        for worker in self._workers:
            worker.start()
            self._idle.put(worker)
        self._threads = ThreadPoolExecutor(jobs)  # (so a thread always finds an idle one)

    def submit(self, requests: list[TrialRequest]) -> list[Future[Outcome]]:
        """Compile each request in the first free process; each future is done when its
        compile is, so a caller can time one config while others still compile."""
        return [self._threads.submit(self._compile, request) for request in requests]

    def _compile(self, request: TrialRequest) -> Outcome:
        worker = self._idle.get()
        try:
            return worker.call(request, self._timeout_s)
        finally:
            self._idle.put(worker)

    def compile(self, requests: list[TrialRequest]) -> list[Outcome]:
        return [future.result() for future in self.submit(requests)]

    def stop(self) -> None:
        """Kill every compile process without waiting for it to go (close reaps them).
        Compiles still running are abandoned (the threads waiting on them end)."""
        self._threads.shutdown(wait=False, cancel_futures=True)
        for worker in self._workers:
            worker.stop()

    def close(self) -> None:
        self.stop()
        for worker in self._workers:
            worker.close()

    def __enter__(self) -> CompilePool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_search_workers(stack: contextlib.ExitStack, env: dict[str, str], jobs: int,
                         timeout_s: float, capability: tuple[int, int] | None = None,
                         fork_first: bool = False, peers: bool = False
                         ) -> tuple[IsolatedWorker, CompilePool | None, IsolatedWorker | None]:
    """One search process's trial worker, `jobs` compile processes for GPUs of compute
    `capability` (none: 0) and, with `peers`, the worker that times the crowns' peers (it
    calls each peer library as it starts, so the first crown does not load them), started
    at once (their imports and start-up overlap) and closed with `stack`: all are killed at
    once on the way out, then reaped, so the timing workers' CUDA contexts go down together
    (one reaped before the others are killed goes down alone)."""
    worker = stack.enter_context(IsolatedWorker("vitune.tuner.trial:run_trial", env, WARM_UP,
                                                fork_first=fork_first))
    worker.start()
    if jobs and capability is None:
        raise ValueError("compile processes need the GPU's compute capability to compile for")
    compiler = stack.enter_context(CompilePool(jobs, capability, env, timeout_s,
                                               fork_first=fork_first)) if jobs else None
    peer_worker = stack.enter_context(IsolatedWorker(
        "vitune.tuner.trial:run_trial", env, WARM_UP_PEERS, fork_first=fork_first)) \
        if peers else None
    if peer_worker is not None:
        peer_worker.start()
    stack.callback(_stop_together, worker, compiler, peer_worker)  # (first on the way out)
    return worker, compiler, peer_worker


def _stop_together(*processes: IsolatedWorker | CompilePool | None) -> None:
    for process in processes:
        if process is not None:
            process.stop()
