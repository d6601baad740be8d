"""Extra search processes, one per extra GPU, alive for a whole `vitune tune` run.

Each member keeps its trial worker (CUDA context, compiled kernels) and its compile pool
warm from bucket to bucket, so a second GPU adds throughput from the first bucket on
instead of paying process and CUDA start-up on every bucket. Members run the same loop as
the main process on the same study (the storage coordinates them).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import queue

from vitune.tuner.compile_pool import CompilePool, default_compile_jobs
from vitune.tuner.isolation import IsolatedWorker
from vitune.tuner.loop import SearchPlan, search

log = logging.getLogger(__name__)


def _member_main(env: dict[str, str], index: int, compile_jobs: int | None,
                 inbox: mp.Queue, done: mp.Queue) -> None:
    with contextlib.ExitStack() as stack:
        worker = stack.enter_context(IsolatedWorker("vitune.tuner.trial:run_trial", env))
        compiler = None
        while (plan := inbox.get()) is not None:
            if compiler is None and not plan.gpu.is_interpreter and compile_jobs != 0:
                compiler = stack.enter_context(CompilePool(
                    compile_jobs or default_compile_jobs(), env, plan.trial_timeout_s))
            try:
                search(plan, worker, seed_offset=index, compiler=compiler)
            except Exception:  # the main process carries on with the bucket alone
                log.exception("search process %d failed on %s", index, plan.study_name)
            done.put(index)


class SearchTeam:
    """Search processes with the given environments (e.g. {"CUDA_VISIBLE_DEVICES": "1"})."""

    def __init__(self, envs: list[dict[str, str]], compile_jobs: int | None = None) -> None:
        ctx = mp.get_context("spawn")
        self._done = ctx.Queue()
        self._inboxes = [ctx.Queue() for _ in envs]
        self._members = [ctx.Process(target=_member_main,
                                     args=(env, i + 1, compile_jobs, inbox, self._done))
                         for i, (env, inbox) in enumerate(zip(envs, self._inboxes, strict=True))]
        for member in self._members:
            member.start()

    def start(self, plan: SearchPlan) -> None:
        """Every member starts searching the plan's bucket."""
        for inbox in self._inboxes:
            inbox.put(plan)

    def wait(self) -> None:
        """Until every member that is still alive has finished the bucket."""
        pending = {i + 1 for i, m in enumerate(self._members) if m.is_alive()}
        while pending:
            try:
                pending.discard(self._done.get(timeout=1))
            except queue.Empty:
                for i in list(pending):
                    if not self._members[i - 1].is_alive():
                        log.warning("search process %d exited; going on without it", i)
                        pending.discard(i)

    def close(self) -> None:
        for inbox, member in zip(self._inboxes, self._members, strict=True):
            if member.is_alive():
                inbox.put(None)
        for member in self._members:
            member.join(timeout=30)
            if member.is_alive():
                member.kill()
                member.join()

    def __enter__(self) -> SearchTeam:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
