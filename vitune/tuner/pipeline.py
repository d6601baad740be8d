"""The way of a search's configs to the GPU: compiled (up to the pool's size at once, each
in a compile process), then checked and timed one at a time in the trial worker, as their
compiles finish; each result is written to the study while the GPU times the next config.

No rounds: a compile process that finishes takes the next config at once. Rounds of 14-16
waited for their slowest compile (2-8 s where most took 1-2 s), so the compile processes
sat idle most of a round and the GPU waited on them (2 x H200, docs/decisions.md, "No
rounds"). The pipeline keeps only as many configs on their way as cover a compile while
the GPU times the ones ahead: each pick is made without the results of those, and the
fewer, the better the search (replayed against the window sweeps: 100% / 85% of seeds
within 3% of the best with 4 on their way, 100% / 72% with 8, 90% / 65% with 14)."""

from __future__ import annotations

import logging
import math
import queue
import time
from collections.abc import Callable
from concurrent.futures import Future

import optuna

from vitune.kernels.vision_attn.space import KernelConfig
from vitune.tuner.isolation import IsolatedWorker, Outcome
from vitune.tuner.plan import SearchPlan
from vitune.tuner.trial import PREPARE, TrialRequest

log = logging.getLogger(__name__)
Pick = tuple[optuna.Trial, KernelConfig]
LOG_EVERY = 16  # configs timed between two lines of -v progress
MIN_DEPTH = 2  # configs on their way to the GPU, at least
DEPTH_SLACK = 2  # more than the recent compile latency / GPU time per config asks for
RECENT = 0.25  # weight of the newest sample in the running averages behind the depth


def request(plan: SearchPlan, cfg: KernelConfig | None, backend: str = "triton",
            given_out: bool = False, vitune_rotation: bool = False) -> TrialRequest:
    return TrialRequest(plan.workload, backend, cfg.to_dict() if cfg else None,
                        plan.gpu.is_interpreter, plan.rep_ms, given_out, vitune_rotation)


def measure(worker: IsolatedWorker, plan: SearchPlan, cfg: KernelConfig | None,
            backend: str = "triton", given_out: bool = False,
            vitune_rotation: bool = False) -> Outcome:
    """Check and time one backend (vitune's kernel with `cfg`, or a peer: with `given_out`,
    its result copied into a buffer given as out=; with `vitune_rotation`, a library's q and
    k rotated by vitune's rotation pass on a rotary workload) in the worker."""
    return worker.call(request(plan, cfg, backend, given_out, vitune_rotation),
                       plan.trial_timeout_s)


def tell(study: optuna.Study, trial: optuna.Trial, *args, **kwargs) -> None:
    """study.tell, but a grid sampler's end-of-grid check is not an error. Optuna stores the
    trial before that check (in a `finally`), which asks the study to stop (only an
    objective function may) or, for a trial we chose ourselves, reads a grid_id it lacks;
    our loop stops by itself when every valid config ran."""
    try:
        study.tell(trial, *args, **kwargs)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise
    except KeyError as exc:
        if exc.args != ("grid_id",):
            raise


def write_result(study: optuna.Study, plan: SearchPlan, trial: optuna.Trial,
                 cfg: KernelConfig, outcome: Outcome, attrs: dict | None = None) -> None:
    """Tell the study a trial's TFLOP/s, or FAIL with the reason, with its `attrs`."""
    for name, value in (attrs or {}).items():
        trial.set_user_attr(name, value)
    if outcome.ok:
        trial.set_user_attr("median_ms", outcome.value["median_ms"])
        tell(study, trial, outcome.value["tflops"])
        return
    trial.set_user_attr("reason", outcome.reason)
    tell(study, trial, state=optuna.trial.TrialState.FAIL)
    log.debug("%s %s failed: %s", plan.study_name, cfg.short(), outcome.reason)


class Pipeline:
    """One search process's configs between being picked and being written. Without a
    compile pool (the interpreter) a config goes straight to the worker."""

    def __init__(self, study: optuna.Study, plan: SearchPlan, worker: IsolatedWorker,
                 compiler=None) -> None:
        self._study, self._plan, self._worker, self._compiler = study, plan, worker, compiler
        self.size = compiler.jobs if compiler else 1
        self._compiling: dict[Future, tuple[Pick, float]] = {}  # (pick, when submitted)
        self._finished: queue.SimpleQueue[tuple[Future, float]] = queue.SimpleQueue()
        self._compile_s: float | None = None  # running averages: submit -> compiled,
        self._gpu_s: float | None = None  # and a config's time in the worker
        self._uncompiled: list[Pick] = []  # (no compile pool)
        self._unwritten: list[tuple[optuna.Trial, KernelConfig, Outcome, dict]] = []
        self._prepared: bool | None = None  # PREPARE: not sent, sent, answered
        self._stats = dict.fromkeys(("timed", "gpu_s", "compile_wait_s", "picking_s"), 0.0)
        self._since_log = time.perf_counter()

    def depth(self) -> int:
        """Configs to keep on their way to the GPU: enough to keep it timing while one
        compiles (running averages, plus DEPTH_SLACK); the whole pool until both are
        known (a bucket's first picks are random ones anyway)."""
        if self._compile_s is None or self._gpu_s is None:
            return self.size
        covering = math.ceil(self._compile_s / max(self._gpu_s, 1e-3)) + DEPTH_SLACK
        return max(MIN_DEPTH, min(self.size, covering))

    def room(self) -> int:
        """Configs it takes now."""
        return max(0, self.depth() - len(self._compiling) - len(self._uncompiled))

    def empty(self) -> bool:
        return not (self._compiling or self._uncompiled)

    def add(self, picks: list[Pick], picking_s: float = 0.0) -> None:
        """Start compiling `picks` (picking them took `picking_s`)."""
        self._stats["picking_s"] += picking_s
        if not picks:
            return
        if self._compiler is None:
            self._uncompiled += picks
            return
        futures = self._compiler.submit([request(self._plan, cfg) for _, cfg in picks])
        submitted = time.perf_counter()
        for future, pick in zip(futures, picks, strict=True):
            self._compiling[future] = (pick, submitted)
            future.add_done_callback(lambda f: self._finished.put((f, time.perf_counter())))
        if self._prepared is None:  # the idle worker builds the inputs and reference while
            self._prepared = False  # the first configs compile and the next are picked
            self._worker.send(request(self._plan, None, PREPARE))

    def time_next(self, while_waiting: Callable[[], bool],
                  while_timing: Callable[[], bool]) -> None:
        """Check and time the config whose compile finished first; until one has, run
        `while_waiting` (picking a few more configs: False once it has none to add). While
        the GPU times it, write the last result and run `while_timing` (the same), at least
        once and then until the worker has the timing done and another compiled config is
        ready for it: picks keep the GPU waiting for at most one call of it where it has
        something to time (a bucket whose compiles were cache hits started with its first
        timing held up by the picks of a whole pipeline: 1.2-2.0 s, H100 and H200), and
        fill the pipeline where it would only wait for a compile. A config that failed to
        compile is failed with the reason."""
        trial, cfg, compiled = self._next_compiled(while_waiting)
        if self._prepared is False:  # (a failure here shows again in the trials)
            self._prepared = True
            self._worker.receive(self._plan.trial_timeout_s)
        if compiled is not None and not compiled.ok:
            write_result(self._study, self._plan, trial, cfg,
                         Outcome(False, reason=f"compile: {compiled.reason}"))
            while_waiting()  # (its place in the pipeline, taken again)
            return
        attrs = {"compile_s": round(compiled.value["compile_s"], 2)} if compiled else {}
        started = time.perf_counter()
        self._worker.send(request(self._plan, cfg))
        self.write_pending()
        while while_timing() and not (self._worker.ready() and not self._finished.empty()):
            pass
        outcome = self._worker.receive(self._plan.trial_timeout_s)
        timed_s = time.perf_counter() - started
        attrs["wall_s"] = round(timed_s, 2)
        self._gpu_s = _running_mean(self._gpu_s, timed_s)
        self._stats["gpu_s"] += timed_s
        self._stats["timed"] += 1
        self._unwritten.append((trial, cfg, outcome, attrs))
        if self._stats["timed"] >= LOG_EVERY:
            self.log_progress()

    def _next_compiled(self, while_waiting: Callable[[], bool]
                       ) -> tuple[optuna.Trial, KernelConfig, Outcome | None]:
        if self._compiler is None:
            return *self._uncompiled.pop(0), None
        waiting = time.perf_counter()
        while self._finished.empty() and self.room() and while_waiting():
            pass
        future, compiled_at = self._finished.get()
        self._stats["compile_wait_s"] += time.perf_counter() - waiting
        pick, submitted = self._compiling.pop(future)
        self._compile_s = _running_mean(self._compile_s, compiled_at - submitted)
        return *pick, future.result()

    def write_pending(self) -> None:
        """Write the last timed result (also on the way out of a Ctrl-C)."""
        while self._unwritten:
            write_result(self._study, self._plan, *self._unwritten.pop())

    def log_progress(self) -> None:
        """Where the time since the last such line went (-v)."""
        s = self._stats
        if s["timed"]:
            log.info("%s: %d configs checked and timed in %.1f s: GPU %.1f s, waiting for "
                     "compiles %.1f s, picking configs %.1f s", self._plan.study_name,
                     s["timed"], time.perf_counter() - self._since_log, s["gpu_s"],
                     s["compile_wait_s"], s["picking_s"])
        self._stats = dict.fromkeys(s, 0.0)
        self._since_log = time.perf_counter()


def _running_mean(mean: float | None, sample: float) -> float:
    return sample if mean is None else (1 - RECENT) * mean + RECENT * sample
