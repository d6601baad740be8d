"""How much one config's measured rate moves between fresh trial-worker processes (new
CUDA context, new allocations) and within one: the tuner's own measurement path
(vitune.tuner.trial.run_trial), the qwen2.5-vl preset's workloads.

    python scripts/timing_spread.py [--processes 6] [--repeats 3] [--bucket window]
        [--configs m32n64w2s2-split-heads-tma,m64n32w4s3-split-heads] [--timer both]

--timer events: the tuner's do_bench (CUDA events around each call, L2 flushed between);
graph: the same calls captured in a CUDA graph and replayed (triton's do_bench_cudagraph:
no host work between calls, no flush), to tell the kernel's time from host-side launch
work such as building tensor descriptors; host: microseconds of host time per launch (many
launches queued back to back, no synchronisation between them).
"""

from __future__ import annotations

import argparse
import re
import statistics
import time

from vitune.kernels.vision_attn.space import KernelConfig
from vitune.tuner.isolation import IsolatedWorker
from vitune.tuner.presets import TUNE_PRESETS, bucket_of
from vitune.tuner.trial import WARM_UP, TrialRequest


def parse_short(name: str) -> KernelConfig:
    """m32n64w2s2-split-heads-tma or win-m64w4s3-split -> KernelConfig (the inverse of
    KernelConfig.short; the window kernel's keys come in the query tile: no n field)."""
    windows = name.startswith("win-")
    head, *flags = name.removeprefix("win-").split("-")
    m, n, w, s = re.fullmatch(r"m(\d+)(?:n(\d+))?w(\d+)s(\d+)", head).groups()
    return KernelConfig(block_m=int(m), block_n=int(n or m), num_warps=int(w),
                        num_stages=int(s), head_split="split" in flags,
                        heads_fastest=windows or "heads" in flags, tma="tma" in flags,
                        windows=windows)


def _ready_peer(req: TrialRequest):
    """The request's workload and vitune's kernel with its config on that workload's inputs,
    run once (compiled and planned) in this trial worker process."""
    from vitune.tuner.peers import vitune_with
    from vitune.tuner.trial import _inputs_for

    w = req.workload
    q, k, v, cu, _ = _inputs_for(w, "cuda", reference=False)
    peer = vitune_with(KernelConfig.from_dict(req.config))(w, q, k, v, cu)
    peer.run()
    return w, peer


def measure_graph(req: TrialRequest) -> dict:
    """The config's rate timed under a CUDA graph (run in a trial worker process)."""
    from triton.testing import do_bench_cudagraph

    w, peer = _ready_peer(req)  # (compiled and planned before the capture)
    ms = do_bench_cudagraph(peer.run, rep=req.rep_ms, return_mode="median")
    return {"tflops": w.tflops(ms)}


def measure_host(req: TrialRequest) -> dict:
    """Host microseconds per launch, reported in the "tflops" slot (run in a trial worker)."""
    import torch

    _, peer = _ready_peer(req)
    torch.cuda.synchronize()
    launches = 200
    t0 = time.perf_counter()
    for _ in range(launches):
        peer.run()
    host_s = time.perf_counter() - t0
    torch.cuda.synchronize()
    return {"tflops": host_s / launches * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bucket", default="window", help="part of the bucket key")
    parser.add_argument("--configs", default="m32n64w2s2-split-heads-tma,"
                        "m64n32w4s3-split-heads,m64n64w4s2-split-heads-tma")
    parser.add_argument("--timer", choices=("events", "graph", "host", "both"), default="both")
    args = parser.parse_args()
    timers = ("events", "graph", "host") if args.timer == "both" else (args.timer,)
    workload = next(w for w in TUNE_PRESETS["qwen2.5-vl"] if args.bucket in bucket_of(w).key)
    configs = [parse_short(c) for c in args.configs.split(",")]
    for cfg, name in zip(configs, args.configs.split(","), strict=True):
        assert cfg.short() == name, (cfg.short(), name)
    targets = {"events": "vitune.tuner.trial:run_trial", "graph": "timing_spread:measure_graph",
               "host": "timing_spread:measure_host"}
    for timer in timers:
        rates: dict[str, list[list[float]]] = {c.short(): [] for c in configs}
        for _ in range(args.processes):
            with IsolatedWorker(targets[timer], warm_up=WARM_UP) as worker:
                for name in rates:
                    rates[name].append([])
                for cfg in configs * args.repeats:
                    out = worker.call(TrialRequest(workload, "triton", cfg.to_dict(), False),
                                      120)
                    rate = round(out.value["tflops"], 1) if out.ok else 0.0
                    rates[cfg.short()][-1].append(rate)
        unit = "host us per launch" if timer == "host" else "TFLOP/s"
        print(f"{workload.name}, timer {timer}: {unit} per fresh process (repeats within one)")
        for name, per_process in rates.items():
            flat = [r for rs in per_process for r in rs]
            print(f"{name:28s} min {min(flat):6.1f} median {statistics.median(flat):6.1f} "
                  f"max {max(flat):6.1f} | " + " ".join("/".join(map(str, rs))
                                                      for rs in per_process))


if __name__ == "__main__":
    main()
