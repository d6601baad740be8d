"""Where a tuning run's first seconds go, process by process: one trial worker, the peers'
worker and `--processes` compile processes, forked from a fork server and started all at
once as `vitune tune` starts them, each compile process then handed one config of the
qwen2.5-vl 8 x 1024 bucket, and the first config compiled timed (docs/decisions.md,
"Start-up").

    python scripts/startup_probe.py [--processes 14] [--compile-on cuda]

Each process runs the tuner's warm-up step by step and notes when it got there: forked
(its first line), CUDA initialised, its context made, a first Triton kernel run (and the
peers' libraries called, in the peers' worker); a compile process, when it was ready to
compile (vitune.kernels.compile_only: the GPU hidden, a first tiny compile). Printed:
seconds from the start for the first, median and last process at each step, when the
compiles were done (and their own seconds), and when the first config was timed. Then the
trial worker runs every config compiled, and the probe counts the binaries it had to
compile itself (0: the compile processes built the launch's own). `--compile-on cuda`:
compile processes as they were before the thirteenth session (a CUDA context and a first
kernel each, compiling on CUDA tensors), for comparison; all warm up at once here (the
twelfth session's runs had six at a time: a gate the thirteenth removed, since only the
timing workers make contexts now). Each run has
an empty Triton cache, as the tuner's benchmarks do.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

STEPS: dict[str, float] = {}  # (in each worker: when it reached each step, epoch seconds)


def trial_warm_up() -> None:
    STEPS["forked"] = time.time()
    import torch

    from vitune.kernels.touch import touch_gpu

    torch.cuda.init()
    STEPS["cuda initialised"] = time.time()
    torch.empty(1, device="cuda")
    STEPS["context made"] = time.time()
    touch_gpu()
    STEPS["first kernel run"] = time.time()


def cuda_compile_warm_up() -> None:
    """A compile process's warm-up before the thirteenth session: a CUDA context and a
    first kernel."""
    from vitune.tuner.trial import COMPILER_NICENESS

    os.nice(COMPILER_NICENESS)
    trial_warm_up()


def compile_warm_up() -> None:
    """The tuner's compile-process warm-up (the GPU hidden), traced."""
    STEPS["forked"] = time.time()
    from vitune.tuner.trial import warm_up_compiler

    warm_up_compiler()
    STEPS["compiler ready"] = time.time()


def peers_warm_up() -> None:
    trial_warm_up()
    from vitune.tuner.peers import warm_up_peers

    warm_up_peers()
    STEPS["peers called"] = time.time()


def compile_traced(request) -> dict:
    from vitune.tuner.trial import precompile

    compile_s = precompile(request)["compile_s"]
    return {**STEPS, "compiled": time.time(), "compile_s": compile_s,
            "context": _has_context()}


def compile_on_cuda(request) -> dict:
    """precompile as it was before the thirteenth session: on the workload's CUDA inputs."""
    import torch

    from vitune.kernels.vision_attn.launch import launch_vision_attention
    from vitune.kernels.vision_attn.space import KernelConfig

    w = request.workload
    q, k, v = w.make_qkv("cuda")
    start = time.perf_counter()
    launch_vision_attention(q, k, v, torch.empty_like(q), w.cu_seqlens("cuda"),
                            w.head_dim ** -0.5, KernelConfig.from_dict(request.config),
                            warmup=True)
    return {**STEPS, "compiled": time.time(), "compile_s": time.perf_counter() - start,
            "context": _has_context()}


def _has_context() -> bool:
    """Whether this thread has a current CUDA context (the driver's own answer)."""
    import ctypes

    context = ctypes.c_void_p()
    status = ctypes.CDLL("libcuda.so.1").cuCtxGetCurrent(ctypes.byref(context))
    return status == 0 and bool(context.value)


def _binaries(cache: str) -> int:
    return len(list(Path(cache).glob("*/*.cubin")))


def trial_traced(request) -> dict:
    from vitune.tuner.trial import run_trial

    return STEPS if request is None else {**run_trial(request), "timed": time.time()}


def _row(name: str, times: list[float]) -> str:
    if not times:
        return f"{name:18s}      -"
    return (f"{name:18s} {min(times):6.2f} {statistics.median(times):6.2f} "
            f"{max(times):6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=14)
    parser.add_argument("--compile-on", choices=("none", "cuda"), default="none")
    args = parser.parse_args()
    cache = os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="probe-triton-")

    from vitune.runtime.gpu import detect_gpu
    from vitune.tuner.compile_pool import compiler_env
    from vitune.tuner.isolation import IsolatedWorker, start_fork_server
    from vitune.tuner.presets import TUNE_PRESETS
    from vitune.tuner.search import bucket_configs
    from vitune.tuner.trial import PREPARE, TrialRequest

    start_fork_server()  # (inherits the empty cache)
    gpu = detect_gpu()
    workload = TUNE_PRESETS["qwen2.5-vl"][0]
    configs = random.Random(0).sample(bucket_configs(workload, gpu.arch), args.processes)
    env = {"PYTHONPATH": os.pathsep.join(sys.path)}
    time.sleep(5)  # (the fork server's imports done, as in a run by the time it forks)

    started = time.time()
    trial = IsolatedWorker("startup_probe:trial_traced", env, "startup_probe:trial_warm_up")
    target, warm_up, compile_env = \
        ("startup_probe:compile_on_cuda", "startup_probe:cuda_compile_warm_up", env) \
        if args.compile_on == "cuda" else \
        ("startup_probe:compile_traced", "startup_probe:compile_warm_up",
         compiler_env(env, gpu.capability))
    compilers = [IsolatedWorker(target, compile_env, warm_up) for _ in configs]
    peers = IsolatedWorker("startup_probe:trial_traced", env, "startup_probe:peers_warm_up")
    for worker in [trial, *compilers, peers]:  # (in the tuner's order)
        worker.start()
    all_started = time.time() - started
    for worker, cfg in zip(compilers, configs, strict=True):
        worker.send(TrialRequest(workload, "triton", cfg.to_dict(), False))
    trial.send(TrialRequest(workload, PREPARE, None, False))  # (as a search does)
    compiled: dict[int, dict] = {}
    stage, first, timed = "preparing", None, None
    while (len(compiled) < len(compilers) or stage != "done") and time.time() - started < 120:
        for i, worker in enumerate(compilers):
            if i not in compiled and worker.ready():
                outcome = worker.receive(60)
                compiled[i] = outcome.value if outcome.ok else {"failed": outcome.reason}
                first = first or configs[i]
        if stage == "preparing" and trial.ready():
            trial.receive(60)
            stage = "idle"
        if stage == "idle" and first is not None:
            trial.send(TrialRequest(workload, "triton", first.to_dict(), False))
            stage = "timing"
        elif stage == "timing" and trial.ready():
            outcome, stage = trial.receive(60), "done"
            timed = outcome.value["timed"] - started if outcome.ok else None
        time.sleep(0.005)
    # Every config compiled, run by the trial worker: did it find each binary in the cache?
    before = _binaries(cache)
    ran = [trial.call(TrialRequest(workload, "triton", cfg.to_dict(), False), 120).ok
           for i, cfg in enumerate(configs) if i in compiled and "failed" not in compiled[i]]
    recompiled = _binaries(cache) - before
    trial_steps = trial.call(None, 60).value or {}
    peer_steps = peers.call(None, 120).value or {}

    print(f"{len(compilers)} compile processes, a trial worker and the peers' worker; all "
          f"started (forks asked) in {all_started:.2f} s")
    print(f"{'compile processes':18s} {'first':>6s} {'median':>6s} {'last':>6s}  (s from start)")
    done = [c for c in compiled.values() if "failed" not in c]
    for step in ("forked", "cuda initialised", "context made", "first kernel run",
                 "compiler ready", "compiled"):
        print(_row(step, [c[step] - started for c in done if step in c]))
    print(_row("compiles' own s", [c["compile_s"] for c in done]),
          f"({len(done)}/{len(compiled)} ok)")
    for name, steps in (("trial", trial_steps), ("peers", peer_steps)):
        print(f"{name} worker: " + ", ".join(f"{step} {t - started:.2f}"
                                             for step, t in steps.items()))
    print(f"first config timed {timed:.2f} s" if timed else "no config timed")
    for reason in sorted({c["failed"][-300:] for c in compiled.values() if "failed" in c}):
        print(f"a compile failed: {reason}")
    contexts = sum(c.get("context", False) for c in done)
    print(f"compiled on {args.compile_on} (GPU): {contexts} of {len(done)} compile processes "
          f"had a CUDA context; the trial worker ran "
          f"{sum(ran)} of {len(ran)} of their configs and compiled {recompiled} itself")
    for worker in [trial, peers, *compilers]:
        worker.close()


if __name__ == "__main__":
    main()
