"""Extra search processes, one per extra GPU, alive for a whole `vitune tune` run.

Each member forks its trial worker (CUDA context, compiled kernels) and its compile pool
at once and keeps them warm from bucket to bucket, so a second GPU adds throughput from
the first bucket on. Members run the same loop as the main process on the same study (the
storage coordinates them) and take the buckets in the order given, each as soon as they
are done with the one before: every bucket is handed over at the start, so nobody waits
for the others at the end of a bucket.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import queue
import signal
import time

from vitune.logs import LOG_FORMAT
from vitune.tuner.compile_pool import CompilePool
from vitune.tuner.isolation import (
    IsolatedWorker,
    children_ignore_ctrl_c,
    process_context,
    start_fork_server,
)
from vitune.tuner.loop import SearchPlan, search
from vitune.tuner.trial import WARM_UP

log = logging.getLogger(__name__)


def _member_main(env: dict[str, str], index: int, compile_jobs: int, timeout_s: float,
                 inbox: mp.Queue, done: mp.Queue, log_level: int = logging.WARNING) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the main process stops members
    logging.basicConfig(level=log_level, format=LOG_FORMAT)
    with contextlib.ExitStack() as stack:
        # Forked from this process (torch imported, no CUDA, one thread yet): the fork
        # server of its own that it would first have to start (torch imported again)
        # delayed this process's first trials by 4.7 s on 2 x H100 (docs/perf-notes.md).
        worker = stack.enter_context(IsolatedWorker("vitune.tuner.trial:run_trial", env,
                                                    WARM_UP, fork_first=True))
        worker.start()
        compiler = stack.enter_context(CompilePool(compile_jobs, env, timeout_s,
                                                   fork_first=True)) \
            if compile_jobs else None
        stack.callback(worker.stop)  # (first: it goes while the compile processes do)
        start_fork_server()  # for the workers that replace crashed ones
        log.info("search process %d: trial worker and %d compile processes starting",
                 index, compile_jobs)
        while (plan := inbox.get()) is not None:
            started = time.perf_counter()
            try:
                search(plan, worker, seed_offset=index, compiler=compiler)
            except Exception:  # the main process carries on with the bucket alone
                log.exception("search process %d failed on %s", index, plan.study_name)
            log.info("search process %d: %s searched in %.1f s", index, plan.study_name,
                     time.perf_counter() - started)
            done.put((index, plan.study_name))


class SearchTeam:
    """Search processes with the given environments (e.g. {"CUDA_VISIBLE_DEVICES": "1"}),
    each with `compile_jobs` compile processes (0: none, e.g. on the interpreter) that give
    up on a compile after `compile_timeout_s`."""

    def __init__(self, envs: list[dict[str, str]], compile_jobs: int,
                 compile_timeout_s: float = 300) -> None:
        # (forked from the fork server where there is one: torch is imported there)
        ctx = process_context(envs[0] if envs else {})
        self._done = ctx.Queue()
        self._inboxes = [ctx.Queue() for _ in envs]
        self._members = [ctx.Process(target=_member_main,
                                     args=(env, i + 1, compile_jobs, compile_timeout_s, inbox,
                                           self._done, logging.getLogger().level))
                         for i, (env, inbox) in enumerate(zip(envs, self._inboxes, strict=True))]
        self._searching: dict[str, set[int]] = {}  # study name -> members still on it
        self._released = False
        with children_ignore_ctrl_c():  # on Ctrl-C the main process stops them (close)
            for member in self._members:
                member.start()

    def start(self, plan: SearchPlan) -> None:
        """Every member searches the plan's bucket once done with the ones before."""
        self._searching[plan.study_name] = {i + 1 for i, m in enumerate(self._members)
                                            if m.is_alive()}
        for inbox in self._inboxes:
            inbox.put(plan)

    def release(self) -> None:
        """No more plans: each member exits once done with those it has, while this process
        works on (its processes' shutdown then costs the run nothing)."""
        for inbox, member in zip(self._inboxes, self._members, strict=True):
            if member.is_alive():
                inbox.put(None)
        self._released = True

    def finished(self, plan: SearchPlan, wait: bool = False) -> bool:
        """Whether every member still alive has finished the plan's bucket (`wait`: block
        until it has)."""
        pending = self._searching.get(plan.study_name, set())
        while pending:
            try:
                index, name = self._done.get(timeout=1) if wait else self._done.get_nowait()
                self._searching[name].discard(index)
            except queue.Empty:
                for i in list(pending):
                    if not self._members[i - 1].is_alive():
                        log.warning("search process %d exited; going on without it", i)
                        pending.discard(i)
                if not wait:
                    break
        return not pending

    def close(self, wait: bool = True) -> None:
        """Members finish the plans they have (`wait`), or stop at once (Ctrl-C, an error:
        trials they were running stay RUNNING, and a resumed run tries them again)."""
        if not self._released:
            self.release()
        for member in self._members:
            member.join(timeout=30 if wait else 0)
            if member.is_alive():
                member.kill()
                member.join()

    def __enter__(self) -> SearchTeam:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(wait=exc_type is None)
