"""A/B of the kernel's one binary for every count: the kernel as it is (`do_not_specialize`
on its count arguments) against one rebuilt without it, which Triton specialises.

Triton specialises an integer argument that is 1 or divisible by 16, so a call whose
segment count or token count falls in a class not seen before compiles the kernel again
(seconds, on first use in a process). Does one binary for every count cost speed? (It did
not: docs/decisions.md, "One binary for every segment count"; the kernel has had it since.)

    python scripts/ab_specialize.py [--head-dim 80] [--configs m64n64w4s2-split-heads-tma,...]

Per variant, in a fresh process with an empty Triton cache: the first call's wall time for
the same 16384 tokens cut into 2, 1, 16 and 8 segments (a first call that compiles takes
seconds), then each config's rate on 4 x 4096 and on 1920x1080 windows, checked against
the float32 reference. Prints one table per part.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing_spread import parse_short  # noqa: E402

from vitune.tuner.isolation import IsolatedWorker  # noqa: E402

SEGMENT_COUNTS = (2, 1, 16, 8)
TOKENS = 16384


def segment_workloads(head_dim: int) -> list:
    """The same tokens cut into each of SEGMENT_COUNTS equal segments."""
    from vitune.tuner.workloads import Workload

    return [Workload(f"{n} x {TOKENS // n}", (TOKENS // n,) * n, head_dim=head_dim)
            for n in SEGMENT_COUNTS]


def use_variant(variant: str) -> None:
    """Point the launcher at the kernel as it is ("as-is", one binary for every count) or
    rebuilt without do_not_specialize ("specialised")."""
    import triton

    from vitune.kernels.vision_attn import kernel, launch

    if variant == "specialised":
        launch.vision_attn_fwd = triton.jit(kernel.vision_attn_fwd.fn)


def measure(job: dict) -> dict:
    """In a fresh worker: first-call seconds per segment count, then rates."""
    import torch

    from vitune.kernels.vision_attn.launch import launch_vision_attention
    from vitune.kernels.vision_attn.reference import (
        TOLERANCE,
        reference_attention,
        relative_error,
    )
    from vitune.tuner.measure import time_gpu
    from vitune.tuner.workloads import Workload, qwen_window_seqlens

    use_variant(job["variant"])
    cfg, d = parse_short(job["config"]), job["head_dim"]
    first_call = {}
    for w in segment_workloads(d):
        q, k, v = w.make_qkv("cuda")
        cu, out = w.cu_seqlens("cuda"), torch.empty_like(q)
        torch.cuda.synchronize()
        start = time.perf_counter()
        launch_vision_attention(q, k, v, out, cu, d ** -0.5, cfg)
        torch.cuda.synchronize()
        first_call[w.name] = time.perf_counter() - start
    rates = {}
    for w in (Workload("4 x 4096", (4096,) * 4, head_dim=d),
              Workload("windows 1920x1080", qwen_window_seqlens(1080, 1920), head_dim=d)):
        q, k, v = w.make_qkv("cuda")
        cu, out = w.cu_seqlens("cuda"), torch.full_like(q, float("nan"))
        launch_vision_attention(q, k, v, out, cu, d ** -0.5, cfg)
        ref = reference_attention(q, k, v, cu, compute_dtype=torch.float32)
        err = relative_error(out, ref)
        if not err <= TOLERANCE[w.torch_dtype]:
            raise ValueError(f"{job['variant']} {job['config']} {w.name}: error {err:.1e}")
        call = functools.partial(launch_vision_attention, q, k, v, out, cu, d ** -0.5, cfg)
        rates[w.name] = w.tflops(time_gpu(call).median_ms)
    return {"first_call_s": first_call, "tflops": rates}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--head-dim", type=int, default=80)
    parser.add_argument("--configs", default="m64n64w4s2-split-heads-tma,"
                        "m128n64w4s3-split-heads-tma,m32n64w2s2-split-heads-tma")
    parser.add_argument("--rounds", type=int, default=2, help="A/B rounds, alternating")
    args = parser.parse_args()
    results: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.rounds):
        for config in args.configs.split(","):
            for variant in ("specialised", "as-is"):
                with tempfile.TemporaryDirectory() as cache:
                    env = {"TRITON_CACHE_DIR": cache, "PYTHONPATH": os.pathsep.join(sys.path)}
                    with IsolatedWorker("ab_specialize:measure", env) as worker:
                        out = worker.call({"variant": variant, "config": config,
                                           "head_dim": args.head_dim}, 600)
                if not out.ok:
                    print(f"{variant} {config}: {out.reason}")
                    continue
                results.setdefault((config, variant), []).append(out.value)
    print(f"first call, seconds (a compile), {TOKENS} tokens in n segments, d{args.head_dim}")
    names = [w.name for w in segment_workloads(args.head_dim)]
    print(f"{'config':30s} {'variant':11s} " + " ".join(f"{n:>10s}" for n in names))
    for (config, variant), runs in results.items():
        cells = [max(r["first_call_s"][n] for r in runs) for n in names]
        print(f"{config:30s} {variant:11s} " + " ".join(f"{c:10.2f}" for c in cells))
    print("TFLOP/s, best of the rounds")
    for (config, variant), runs in results.items():
        cells = {w: max(r["tflops"][w] for r in runs) for w in runs[0]["tflops"]}
        print(f"{config:30s} {variant:11s} "
              + " ".join(f"{w} {rate:6.1f}" for w, rate in cells.items()))


if __name__ == "__main__":
    main()
