"""Run trials in a worker process, so an illegal memory access, a compiler crash or a hang
costs one trial and not the study. The worker is kept between trials (compiled kernels and
the CUDA context stay warm) and replaced after any crash or timeout.

GPU workers are forked from a fork server that imported torch, Triton and the kernel once
(nothing there touches CUDA, so forking is safe): a tuning run starts 17 of them per GPU at
once, and 34 spawned ones each importing for themselves were all ready only after 14.5 s
on a 32-core host (docs/decisions.md, "Start-up", has what
the fork server did and did not save). Workers for the Triton interpreter are spawned,
since TRITON_INTERPRET only takes effect when the kernel module is imported."""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing as mp
import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# What the fork server imports once for every worker it forks (none of it starts CUDA)
FORK_SERVER_PRELOAD = ["vitune.kernels.vision_attn.launch", "vitune.tuner.trial",
                       "vitune.bench.timer", "vitune.bench.backends", "vitune.bench.measure"]


@dataclass(frozen=True)
class Outcome:
    ok: bool
    value: Any = None  # what the target returned, when ok
    reason: str = ""  # why not, when not ok


def _function(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _serve(conn, target: str, env: dict[str, str], warm_up: str | None) -> None:
    # Ctrl-C reaches every process of the terminal's group: the parent stops its workers
    # (a worker left alone exits when the parent's end of the pipe closes), so no worker
    # prints a KeyboardInterrupt traceback of its own (most start with it ignored already:
    # children_ignore_ctrl_c).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # (a forked worker inherited the fork server's environment: its own applies from here,
    # before CUDA starts or Triton looks for its cache)
    os.environ.update(env)
    for path in env.get("PYTHONPATH", "").split(os.pathsep):
        if path and path not in sys.path:
            sys.path.append(path)
    fn = _function(target)
    if warm_up is not None:
        try:
            _function(warm_up)()
        except Exception:  # the first call reports what is wrong
            pass
    while True:
        try:
            payload = conn.recv()
        except EOFError:  # the parent is gone
            return
        try:
            result = (True, fn(payload))
        except Exception as exc:  # reported to the parent as this trial's failure
            result = (False, f"{type(exc).__name__}: {exc}")
        try:
            conn.send(result)
        except (BrokenPipeError, ConnectionResetError):  # the parent was stopped meanwhile
            return


def process_context(env: dict[str, str]):
    """Fork server for compiled-kernel workers; spawn where the interpreter is wanted (in
    the worker or in this process, whose environment the fork server would inherit)."""
    if "1" in (env.get("TRITON_INTERPRET"), os.environ.get("TRITON_INTERPRET")) \
            or "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(FORK_SERVER_PRELOAD)  # (used when the server starts)
    return ctx


@contextlib.contextmanager
def children_ignore_ctrl_c() -> Iterator[None]:
    """Processes started inside begin with SIGINT ignored (Python keeps an ignored SIGINT at
    start-up), so a Ctrl-C while they import prints no traceback: the process that started
    them stops them. Its own Ctrl-C is held meanwhile (blocked, not lost) and arrives on
    the way out. Signal handlers belong to the main thread: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def start_fork_server() -> None:
    """Start this process's fork server now, so its imports overlap the caller's own
    start-up (workers started later fork from it at once); no-op where workers spawn."""
    if process_context({}).get_start_method() == "forkserver":
        from multiprocessing import forkserver

        with children_ignore_ctrl_c():  # (its forked workers inherit that)
            forkserver.ensure_running()


class IsolatedWorker:
    """Calls `target` ("module:function") on payloads in a child process."""

    def __init__(self, target: str, env: dict[str, str] | None = None,
                 warm_up: str | None = None, start_method: str | None = None,
                 fork_first: bool = False) -> None:
        """`warm_up` ("module:function") runs once as the process starts, e.g. importing
        torch and starting CUDA, so that start() can overlap them with other work.
        `start_method` "spawn" or "forkserver" overrides the choice made from `env`.
        `fork_first`: where workers come from a fork server, fork the first one straight
        from this process instead, if it still has a single thread (a search process just
        forked from the fork server: torch imported, no CUDA, no threads), which spares it
        starting a fork server of its own first; later ones (after a crash) come from the
        fork server, since this process has threads by then."""
        self._target = target
        self._env = dict(env or {})
        self._warm_up = warm_up
        self._ctx = mp.get_context(start_method) if start_method else process_context(self._env)
        self._fork_next = fork_first and self._ctx.get_start_method() == "forkserver"
        self._proc = None
        self._conn = None
        self._awaiting = False  # a payload sent, its outcome not yet received

    def start(self) -> None:
        """Start the process now instead of at the first call (no-op if it runs)."""
        if self._proc is None or not self._proc.is_alive():
            self._start()

    def _start(self) -> None:
        ctx = self._ctx
        if self._fork_next and threading.active_count() == 1:
            ctx = mp.get_context("fork")
        self._fork_next = False
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, daemon=True,
                                 args=(child, self._target, self._env, self._warm_up))
        # A spawned child inherits the environment at start, before it re-imports anything
        # (such as triton, which reads TRITON_INTERPRET when kernels are defined). The fork
        # server keeps this process's own (a forked child applies its env in _serve).
        spawned = ctx.get_start_method() == "spawn"
        saved = {k: os.environ.get(k) for k in self._env} if spawned else {}
        os.environ.update(self._env if spawned else {})
        try:
            with children_ignore_ctrl_c():
                self._proc.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child.close()
        self._conn = parent

    def call(self, payload: Any, timeout_s: float) -> Outcome:
        self.send(payload)
        return self.receive(timeout_s)

    def send(self, payload: Any) -> None:
        """Hand the worker a payload and return at once (the caller does other work while
        it runs); `receive` gets its outcome. One payload at a time."""
        if self._awaiting:
            raise RuntimeError("the worker's last payload has not been received yet")
        self.start()
        assert self._conn is not None
        self._conn.send(payload)
        self._awaiting = True

    def ready(self) -> bool:
        """Whether the outcome of the payload sent last is in (receive would not wait)."""
        return self._awaiting and self._conn is not None and self._conn.poll(0)

    def receive(self, timeout_s: float) -> Outcome:
        """The outcome of the payload sent last, waiting at most `timeout_s` for it."""
        assert self._conn is not None and self._proc is not None
        self._awaiting = False
        if not self._conn.poll(timeout_s):
            self.close()
            return Outcome(False, reason=f"timed out after {timeout_s:.0f} s")
        try:
            ok, value = self._conn.recv()
        except EOFError:
            self._proc.join(timeout=10)  # the pipe closes just before the exit is reaped
            code = self._proc.exitcode
            self.close()
            return Outcome(False, reason=f"worker process died (exit code {code})")
        if ok:
            return Outcome(True, value)
        if "AcceleratorError" in value or "CUDA error" in value:
            self.close()  # the worker's CUDA context is unusable after a device fault
        return Outcome(False, reason=value)

    def stop(self) -> None:
        """Kill the process without waiting for it to go (close reaps it): processes
        stopped together tear down their CUDA contexts at the same time, not in turn."""
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join(timeout=10)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None
        self._awaiting = False

    def __enter__(self) -> IsolatedWorker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
