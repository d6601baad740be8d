"""A/B for issue 6's window regime: the segment-major kernel candidate
(vitune/kernels/vision_attn/segments.py) against the main kernel's best window configs, on
Qwen2.5-VL's window layers (both images' windows, bf16, 16 heads), each checked against the
float32 reference first, timed like `vitune bench`, with `varlen_attn` and the memory floor
(q, k, v read once and o written once at this GPU's measured copy bandwidth) beside them.

    python scripts/ab_segments.py [--head-dims 80,64,128] [--heads-per-program 1,2,4]
"""

from __future__ import annotations

import argparse
import functools
import itertools

import torch

from vitune.kernels.vision_attn.launch import launch_vision_attention
from vitune.kernels.vision_attn.reference import TOLERANCE, reference_attention, relative_error
from vitune.kernels.vision_attn.segments import SegmentConfig, launch_segments
from vitune.kernels.vision_attn.space import KernelConfig
from vitune.tuner.measure import time_gpu
from vitune.tuner.peers import PEERS, check_backend
from vitune.tuner.workloads import Workload, qwen_window_seqlens

# The main kernel's window winners on H100 and H200 (sixth and seventh sessions) and the
# runner-up configs of the H100 window sweep
MAIN_CONFIGS = [KernelConfig(block_m=32, block_n=64, num_warps=2, num_stages=2, tma=True,
                             heads_fastest=True),
                KernelConfig(block_m=64, block_n=32, num_warps=4, num_stages=3,
                             heads_fastest=True),
                KernelConfig(block_m=64, block_n=64, num_warps=4, num_stages=2, tma=True,
                             heads_fastest=True)]


def segment_configs(heads_per_program: list[int]) -> list[SegmentConfig]:
    """Windows of <= 64 tokens in one or two query tiles, keys in one block of 64 (so the
    key loop runs once and more stages buy nothing); split head dims with two stages
    (Triton 3.6 miscompiles some split configs with one stage on the wgmma path: space.py's
    rules)."""
    out = []
    for block_m, warps, hpp in itertools.product((64, 32), (4, 2), heads_per_program):
        for stages, split in ((1, False), (2, False), (2, True)):
            out.append(SegmentConfig(block_m, 64, warps, stages, hpp, split))
    return out


def run_of(launch, cfg, q, k, v, cu):
    """(name, poisonable output, the call) of one kernel config on these inputs."""
    out = torch.empty_like(q)
    return cfg.short(), out, functools.partial(launch, q, k, v, out, cu, q.shape[-1] ** -0.5,
                                               cfg)


def copy_bandwidth_gbs() -> float:
    """Device-to-device copy of 1 GiB, read + write bytes per second (GB/s)."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = time_gpu(lambda: dst.copy_(src)).median_ms
    return 2 * src.numel() / ms / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--head-dims", default="80")
    parser.add_argument("--heads-per-program", default="1,2,4")
    args = parser.parse_args()
    bandwidth = copy_bandwidth_gbs()
    print(f"copy bandwidth {bandwidth:.0f} GB/s")
    seqlens = qwen_window_seqlens(1024, 1024) + qwen_window_seqlens(1080, 1920)
    hpp = [int(x) for x in args.heads_per_program.split(",")]
    for d in (int(x) for x in args.head_dims.split(",")):
        w = Workload(f"windows d{d}", seqlens, head_dim=d)
        q, k, v = w.make_qkv("cuda")
        cu = w.cu_seqlens("cuda")
        ref = reference_attention(q, k, v, cu, compute_dtype=torch.float32)
        floor_us = 4 * q.numel() * q.element_size() / bandwidth / 1e3
        print(f"\n{w.name}: {len(seqlens)} windows, {sum(seqlens)} tokens, "
              f"floor {floor_us:.1f} us")
        inputs = (q, k, v, cu)
        runs = [run_of(launch_vision_attention, cfg, *inputs) for cfg in MAIN_CONFIGS]
        runs += [run_of(launch_segments, cfg, *inputs) for cfg in segment_configs(hpp)]
        for name, out, call in runs:
            out.fill_(float("nan"))
            call()
            err = relative_error(out, ref)
            if not err <= TOLERANCE[w.torch_dtype]:
                print(f"{name:34s} WRONG: relative error {err:.1e}")
                continue
            us = time_gpu(call).median_ms * 1e3
            print(f"{name:34s} {us:7.1f} us {w.tflops(us / 1e3):6.1f} TFLOP/s "
                  f"{us / floor_us:5.2f}x floor")
        peer = PEERS["varlen_attn"](w, q, k, v, cu)
        if peer is not None and check_backend(peer, ref) <= TOLERANCE[w.torch_dtype]:
            us = time_gpu(peer.run).median_ms * 1e3
            print(f"{'varlen_attn':34s} {us:7.1f} us {w.tflops(us / 1e3):6.1f} TFLOP/s "
                  f"{us / floor_us:5.2f}x floor")


if __name__ == "__main__":
    main()
