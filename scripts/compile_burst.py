"""How N compiles at once share the host: N of the tuner's compile processes (no GPU,
vitune.kernels.compile_only), warmed up, each handed a different config of the qwen2.5-vl
8 x 1024 bucket at the same moment; per process the compile's wall time and CPU time (its
own and ptxas'). Wall far above CPU: the compiles wait for cores (or a quota); CPU far above
its one-process value: they do more work together. Each N has an empty Triton cache.

    python scripts/compile_burst.py [--counts 1 4 8 14] [--gpu h100]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def timed_compile(request) -> dict:
    from vitune.tuner.trial import precompile

    return _timed(precompile, request)


def timed_cuda_compile(request) -> dict:
    from startup_probe import compile_on_cuda

    return _timed(compile_on_cuda, request)


def _timed(compile_one, request) -> dict:
    own, children = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    compile_one(request)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"started": started, "ended": time.time(), "cpu": time.process_time() - own,
            "ptxas": after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime}


def host() -> str:
    quota = Path("/sys/fs/cgroup/cpu.max")
    return (f"os.cpu_count() {os.cpu_count()}, affinity {len(os.sched_getaffinity(0))} CPUs, "
            f"cgroup cpu.max {quota.read_text().strip() if quota.exists() else 'n/a'}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 4, 8, 14])
    parser.add_argument("--compile-on", choices=("none", "cuda"), default="none",
                        help="cuda: compile processes as before the thirteenth session (a "
                        "CUDA context each, CUDA inputs)")
    parser.add_argument("--gpu", default="auto", help="a GPU key (h100...) to compile for "
                        "without one; auto: this host's GPU")
    args = parser.parse_args()

    from vitune.runtime.gpu import detect_gpu, identity_for_key
    from vitune.tuner.compile_pool import compiler_env
    from vitune.tuner.isolation import IsolatedWorker
    from vitune.tuner.presets import TUNE_PRESETS
    from vitune.tuner.search import bucket_configs
    from vitune.tuner.trial import WARM_UP_COMPILER, TrialRequest

    gpu = detect_gpu() if args.gpu == "auto" else identity_for_key(args.gpu)
    workload = TUNE_PRESETS["qwen2.5-vl"][0]
    configs = bucket_configs(workload, gpu.arch)
    print(host(), f"compiling on {args.compile_on} (GPU)")
    print(f"{'at once':>7s} {'wall med':>8s} {'wall max':>8s} {'cpu med':>7s} "
          f"{'ptxas med':>9s} {'all done':>8s}  (s)")
    for n in args.counts:
        os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="burst-triton-")
        env = {"PYTHONPATH": os.pathsep.join(sys.path),
               "TRITON_CACHE_DIR": os.environ["TRITON_CACHE_DIR"]}
        target, warm_up = ("compile_burst:timed_compile", WARM_UP_COMPILER)
        if args.compile_on == "cuda":
            target = "compile_burst:timed_cuda_compile"
            warm_up = "startup_probe:cuda_compile_warm_up"
        else:
            env = compiler_env(env, gpu.capability)
        workers = [IsolatedWorker(target, env, warm_up) for _ in range(n)]
        for worker in workers:
            worker.start()
        time.sleep(8)  # (warm-ups done: a first tiny compile each, or a context and a kernel)
        picked = random.Random(n).sample(configs, n)
        sent = time.time()
        for worker, cfg in zip(workers, picked, strict=True):
            worker.send(TrialRequest(workload, "triton", cfg.to_dict(), False))
        rows = [w.receive(120) for w in workers]
        for worker in workers:
            worker.close()
        done = [r.value for r in rows if r.ok]
        for r in rows:
            if not r.ok:
                print(f"  failed: {r.reason[-200:]}")
        if not done:
            continue
        walls = [d["ended"] - d["started"] for d in done]
        print(f"{n:7d} {statistics.median(walls):8.2f} {max(walls):8.2f} "
              f"{statistics.median(d['cpu'] for d in done):7.2f} "
              f"{statistics.median(d['ptxas'] for d in done):9.2f} "
              f"{max(d['ended'] for d in done) - sent:8.2f}")


if __name__ == "__main__":
    main()
