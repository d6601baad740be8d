"""How long a tuning run's worker processes take to start, all at once as `vitune tune`
starts them: per GPU, one trial worker and `--processes` compile processes, each running a
warm-up before it can serve (docs/perf-notes.md, seventh session).

    python scripts/startup_probe.py [--processes 16] [--gpus 0,1]

Compared (each in fresh processes, one after the other): spawned processes that import
torch, triton and the kernel themselves, with the warm-up "import" (CUDA initialised: the
tuner's before the seventh session) or "touch" (also a CUDA context and a first Triton
kernel run), and "forked touch" (the tuner's now: forked from a fork server that imported
them once). Prints when the first, median and last process was ready, and how long the
first Triton compile-and-run took in one of them afterwards.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vitune.tuner.isolation import IsolatedWorker  # noqa: E402
from vitune.tuner.trial import WARM_UP  # noqa: E402

# name: (start method, warm-up)
VARIANTS = {"import": ("spawn", "startup_probe:import_only"), "touch": ("spawn", WARM_UP),
            "forked touch": ("forkserver", WARM_UP)}


def import_only() -> None:
    import torch

    from vitune.kernels.vision_attn import launch  # noqa: F401

    torch.cuda.init()


def clock(_payload) -> float:
    return time.time()


def first_kernel(_payload) -> float:
    """Seconds for a Triton kernel's first compile and run in this process."""
    from vitune.kernels.touch import touch_gpu

    start = time.perf_counter()
    touch_gpu()
    return time.perf_counter() - start


def ready_times(method: str, warm_up: str, gpus: list[str], processes: int
                ) -> tuple[list[float], str]:
    with tempfile.TemporaryDirectory() as cache:
        base = {"TRITON_CACHE_DIR": cache, "PYTHONPATH": os.pathsep.join(sys.path)}
        started = time.time()
        workers = [IsolatedWorker("startup_probe:clock", {**base, "CUDA_VISIBLE_DEVICES": g},
                                  warm_up, method)
                   for g in gpus for _ in range(processes + 1)]
        for w in workers:
            w.start()
        try:
            ready = [w.call(None, 300).value - started for w in workers]
            with IsolatedWorker("startup_probe:first_kernel",
                                {**base, "CUDA_VISIBLE_DEVICES": gpus[0]}, warm_up,
                                method) as one:
                out = one.call(None, 300)
                first = f"{out.value:.2f} s" if out.ok else out.reason
        finally:
            for w in workers:
                w.close()
    return ready, first


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=16)
    parser.add_argument("--gpus", default="0")
    args = parser.parse_args()
    gpus = args.gpus.split(",")
    print(f"{len(gpus)} GPU(s) x ({args.processes} compile + 1 trial) processes")
    print(f"{'start':12s} {'first':>7s} {'median':>7s} {'last':>7s}  first kernel after")
    for name, (method, warm_up) in VARIANTS.items():
        ready, first = ready_times(method, warm_up, gpus, args.processes)
        print(f"{name:12s} {min(ready):7.1f} {statistics.median(ready):7.1f} "
              f"{max(ready):7.1f}  {first}")


if __name__ == "__main__":
    main()
