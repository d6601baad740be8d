"""Extra search processes, one per extra GPU, alive for a whole `vitune tune` run.

Each member forks its trial worker (CUDA context, compiled kernels) and its compile pool
at once and keeps them warm from bucket to bucket, so a second GPU adds throughput from
the first bucket on. Members run the same loop as the main process and take their buckets
from the run's board (vitune.tuner.bucket_board): one nobody has started as soon as its plan
arrives, then, once none is left, one still being searched, on the same study (the
storage coordinates them). Every plan is sent as soon as it is planned, so a member
starts on the first bucket while the main process plans the others.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import queue
import signal
import time

import optuna

from vitune.logs import LOG_FORMAT
from vitune.tuner.bucket_board import BucketBoard
from vitune.tuner.compile_pool import start_search_workers
from vitune.tuner.isolation import (
    children_ignore_ctrl_c,
    process_context,
    start_fork_server,
)
from vitune.tuner.plan import SearchPlan
from vitune.tuner.search_loop import search
from vitune.tuner.studies import open_storage, release_orphans

log = logging.getLogger(__name__)


def _member_main(env: dict[str, str], index: int, compile_jobs: int,
                 capability: tuple[int, int] | None, timeout_s: float, inbox: mp.Queue,
                 board: BucketBoard, log_level: int = logging.WARNING) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the main process stops members
    logging.basicConfig(level=log_level, format=LOG_FORMAT)
    with contextlib.ExitStack() as stack:
        # Forked from this process (torch imported, no CUDA, one thread yet): the fork
        # server of its own that it would first have to start (torch imported again)
        # delayed this process's first trials by 4.7 s on 2 x H100 (docs/decisions.md).
        worker, compiler, _ = start_search_workers(stack, env, compile_jobs, timeout_s,
                                                   capability, fork_first=True)
        start_fork_server()  # for the workers that replace crashed ones
        log.info("search process %d: trial worker and %d compile processes starting",
                 index, compile_jobs)
        plans: list[SearchPlan] = []
        while (seat := _claim(board, index, inbox, plans)) is not None:
            plan = plans[seat.bucket]
            started, finished = time.perf_counter(), False
            try:
                search(plan, worker, seed_offset=index, compiler=compiler, seat=seat)
                finished = True
            except Exception:  # the bucket is left open for the main process to finish,
                log.exception("search process %d failed on %s; it stops", index,
                              plan.study_name)
                return  # and this process, which would only take it again, stops
            finally:
                board.leave(index, finished)
            log.info("search process %d: %s searched in %.1f s", index, plan.study_name,
                     time.perf_counter() - started)


def _claim(board: BucketBoard, index: int, inbox: mp.Queue, plans: list[SearchPlan]):
    """The member's next seat on the board, among the plans it has received (waiting for
    more where it has none to take and the main process has more to send); None once
    every plan is in and there is nothing left to take."""
    while True:
        with contextlib.suppress(queue.Empty):  # (the plans already sent, first)
            while len(plans) < board.buckets:
                plans.append(inbox.get_nowait())
        if (seat := board.claim(index, len(plans))) is not None or len(plans) == board.buckets:
            return seat
        plans.append(inbox.get())


class SearchTeam:
    """Search processes with the given environments (e.g. {"CUDA_VISIBLE_DEVICES": "1"}),
    numbered from 1 on the `board` (0 is the main process), each with `compile_jobs`
    compile processes (0: none, e.g. on the interpreter) for GPUs of compute `capability`
    (the run's GPU: one host's GPUs are taken to be alike) that give up on a compile after
    `compile_timeout_s`."""

    def __init__(self, envs: list[dict[str, str]], board: BucketBoard, compile_jobs: int,
                 capability: tuple[int, int] | None = None,
                 compile_timeout_s: float = 300) -> None:
        self._board = board
        # (forked from the fork server where there is one: torch is imported there)
        ctx = process_context(envs[0] if envs else {})
        self._inboxes = [ctx.Queue() for _ in envs]
        self._members = [ctx.Process(target=_member_main,
                                     args=(env, i + 1, compile_jobs, capability,
                                           compile_timeout_s, inbox, board,
                                           logging.getLogger().level))
                         for i, (env, inbox) in enumerate(zip(envs, self._inboxes, strict=True))]
        self._gone: set[int] = set()
        self._plans: list[SearchPlan] = []
        with children_ignore_ctrl_c():  # on Ctrl-C the main process stops them (close)
            for member in self._members:
                member.start()

    def send(self, plan: SearchPlan) -> None:
        """The next bucket's plan, to every member (in the board's order)."""
        self._plans.append(plan)
        for inbox in self._inboxes:
            inbox.put(plan)

    def check(self) -> None:
        """A member that died (killed, out of memory) leaves its bucket open on the board,
        for another process to finish, and the trials it was running released (they would
        otherwise hold their place in the budget until they went stale)."""
        for i, member in enumerate(self._members, start=1):
            if i not in self._gone and not member.is_alive() and member.exitcode:
                log.warning("search process %d exited (%s); going on without it", i,
                            member.exitcode)
                self._release(i, f"search process {i} exited ({member.exitcode})")
                self._board.leave(i, finished=False)
                self._gone.add(i)

    def _release(self, searcher: int, why: str) -> None:
        for plan in self._plans:
            study = optuna.load_study(study_name=plan.study_name,
                                      storage=open_storage(plan.storage))
            if released := release_orphans(study, searcher, why):
                log.warning("%s: %d trials of search process %d released", plan.study_name,
                            released, searcher)

    def close(self, wait: bool = True) -> None:
        """Members finish their buckets (`wait`), or stop at once (Ctrl-C, an error:
        trials they were running stay RUNNING, and a resumed run tries them again)."""
        for member in self._members:
            member.join(timeout=30 if wait else 0)
            if member.is_alive():
                member.kill()
                member.join()

    def __enter__(self) -> SearchTeam:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(wait=exc_type is None)
