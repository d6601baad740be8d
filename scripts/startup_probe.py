"""How soon a tuning run's first configs are compiled and timed, from its worker processes'
start: one trial worker, the peers' worker and `--processes` compile processes, forked from
a fork server and started all at once as `vitune tune` starts them, each compile process
handed one config of the qwen2.5-vl 8 x 1024 bucket at once (docs/perf-notes.md, twelfth
session).

    python scripts/startup_probe.py [--processes 14] [--warm-up touch|compile]
                                    [--helpers fork-server|each]

`--warm-up touch`: compile processes run a first Triton kernel as they start (the tuner's
way before the twelfth session); `compile`: the tuner's `warm_up_compiler` (its CUDA
context and Triton's CUDA helpers, no kernel). `--helpers fork-server`: Triton's CUDA
helper module built once by the fork server (vitune.tuner.fork_server, the tuner's way
now); `each`: by every process as it starts (before). Each run has an empty Triton cache;
run each variant in a fresh process (one fork server per process). Prints when the first,
median and last compile was done and when the first config was timed (seconds from the
start), and the compiles' own seconds.
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


def touch_warm_up() -> None:
    from vitune.tuner import trial

    os.nice(trial.COMPILER_NICENESS)
    trial._start(run_kernel=True)  # noqa: SLF001 (the probe compares the tuner's warm-ups)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=14)
    parser.add_argument("--warm-up", choices=("touch", "compile"), default="compile")
    parser.add_argument("--helpers", choices=("fork-server", "each"), default="fork-server")
    args = parser.parse_args()
    cache = tempfile.mkdtemp(prefix="probe-triton-")
    os.environ["TRITON_CACHE_DIR"] = cache  # (before the fork server starts: inherited)

    from vitune.runtime.gpu import detect_gpu
    from vitune.tuner import isolation
    from vitune.tuner.isolation import IsolatedWorker, start_fork_server
    from vitune.tuner.pipeline import trial_request
    from vitune.tuner.presets import TUNE_PRESETS
    from vitune.tuner.search import bucket_configs
    from vitune.tuner.trial import PREPARE, WARM_UP, WARM_UP_COMPILER, WARM_UP_PEERS

    if args.helpers == "each":
        isolation.FORK_SERVER_PRELOAD = [m for m in isolation.FORK_SERVER_PRELOAD
                                         if m != "vitune.tuner.fork_server"]
    start_fork_server()
    gpu = detect_gpu()
    workload = TUNE_PRESETS["qwen2.5-vl"][0]
    configs = random.Random(0).sample(bucket_configs(workload, gpu.arch), args.processes)
    warm_up = WARM_UP_COMPILER if args.warm_up == "compile" else "startup_probe:touch_warm_up"
    env = {"PYTHONPATH": os.pathsep.join(sys.path)}
    time.sleep(5)  # (the fork server's imports done, as in a run by the time it forks)

    started = time.perf_counter()
    trial = IsolatedWorker("vitune.tuner.trial:run_trial", env, WARM_UP)
    peers = IsolatedWorker("vitune.tuner.trial:run_trial", env, WARM_UP_PEERS)
    compilers = [IsolatedWorker("vitune.tuner.trial:precompile", env, warm_up)
                 for _ in configs]
    for worker in [trial, peers, *compilers]:
        worker.start()
    for worker, cfg in zip(compilers, configs, strict=True):
        worker.send(trial_request(workload, cfg, False, 100))
    trial.send(trial_request(workload, None, False, 100, PREPARE))  # (as a search does)
    done: dict[int, tuple[float, float | None]] = {}
    stage, first_compiled, first_timed = "preparing", None, None
    while (len(done) < len(compilers) or first_timed is None) and \
            time.perf_counter() - started < 120:
        for i, worker in enumerate(compilers):
            if i not in done and worker.ready():
                when, outcome = time.perf_counter() - started, worker.receive(60)
                done[i] = (when, outcome.value["compile_s"] if outcome.ok else None)
                first_compiled = first_compiled or configs[i]
        if stage == "preparing" and trial.ready():
            trial.receive(60)
            stage = "idle"
        if stage == "idle" and first_compiled is not None:
            trial.send(trial_request(workload, first_compiled, False, 100))
            stage = "timing"
        elif stage == "timing" and trial.ready():
            trial.receive(60)
            first_timed, stage = time.perf_counter() - started, "done"
        time.sleep(0.005)
    finished = sorted(t for t, _ in done.values())
    own = [c for _, c in done.values() if c is not None]
    print(f"warm-up {args.warm_up:7s} helpers {args.helpers:11s}"
          f"  compiles done: first {finished[0]:.2f} s, median "
          f"{statistics.median(finished):.2f}, last {finished[-1]:.2f}; first config "
          f"timed {first_timed:.2f} s; compiles' own {min(own):.2f}-{max(own):.2f} s "
          f"({len(own)}/{len(finished)} ok)")
    for worker in [trial, peers, *compilers]:
        worker.close()


if __name__ == "__main__":
    main()
