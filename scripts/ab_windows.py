"""A/B for issue 6's window regime: the window kernel (KernelConfig.windows; windows.py)
against the tile kernel's best window configs, on Qwen2.5-VL's window layers (both test
images' windows, bf16, 16 heads), each checked against the float32 reference first, timed
like `vitune bench`, with `varlen_attn` and the memory floor (q, k, v read once and o
written once at this GPU's measured copy bandwidth) beside them.

    python scripts/ab_windows.py [--head-dims 80,64,128]
"""

from __future__ import annotations

import argparse
import functools
import itertools

import torch

from vitune.kernels.vision_attn.launch import launch_vision_attention
from vitune.kernels.vision_attn.reference import TOLERANCE, reference_attention, relative_error
from vitune.kernels.vision_attn.space import KernelConfig
from vitune.tuner.measure import time_gpu
from vitune.tuner.peers import PEERS, check_backend
from vitune.tuner.workloads import Workload, qwen_window_seqlens

# The tile kernel's window winners on H100 and H200 (sixth and seventh sessions)
TILE_CONFIGS = [KernelConfig(block_m=32, block_n=64, num_warps=2, num_stages=2, tma=True,
                             heads_fastest=True),
                KernelConfig(block_m=64, block_n=32, num_warps=4, num_stages=3,
                             heads_fastest=True)]


def window_configs() -> list[KernelConfig]:
    """Windows of <= 64 tokens in one 64-row step; pipelining depth, warps, head split."""
    return [KernelConfig(block_m=64, block_n=64, num_warps=w, num_stages=s, head_split=split,
                         heads_fastest=True, windows=True)
            for w, s, split in itertools.product((4, 8), (2, 3, 4), (True, False))]


def copy_bandwidth_gbs() -> float:
    """Device-to-device copy of 1 GiB, read + write bytes per second (GB/s)."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = time_gpu(lambda: dst.copy_(src)).median_ms
    return 2 * src.numel() / ms / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--head-dims", default="80,64,128")
    args = parser.parse_args()
    bandwidth = copy_bandwidth_gbs()
    print(f"copy bandwidth {bandwidth:.0f} GB/s")
    seqlens = qwen_window_seqlens(1024, 1024) + qwen_window_seqlens(1080, 1920)
    for d in (int(x) for x in args.head_dims.split(",")):
        w = Workload(f"windows d{d}", seqlens, head_dim=d)
        q, k, v = w.make_qkv("cuda")
        cu = w.cu_seqlens("cuda")
        ref = reference_attention(q, k, v, cu, compute_dtype=torch.float32)
        floor_us = 4 * q.numel() * q.element_size() / bandwidth / 1e3
        print(f"\n{w.name}: {len(seqlens)} windows, {sum(seqlens)} tokens, "
              f"floor {floor_us:.1f} us")
        seen = set()
        for cfg in TILE_CONFIGS + window_configs():
            cfg = cfg.canonical(d)
            if cfg in seen:
                continue
            seen.add(cfg)
            out = torch.full_like(q, float("nan"))
            call = functools.partial(launch_vision_attention, q, k, v, out, cu, d ** -0.5, cfg)
            call()
            err = relative_error(out, ref)
            if not err <= TOLERANCE[w.torch_dtype]:
                print(f"{cfg.short():34s} WRONG: relative error {err:.1e}")
                continue
            us = time_gpu(call).median_ms * 1e3
            print(f"{cfg.short():34s} {us:7.1f} us {w.tflops(us / 1e3):6.1f} TFLOP/s "
                  f"{us / floor_us:5.2f}x floor")
        peer = PEERS["varlen_attn"](w, q, k, v, cu)
        if peer is not None and check_backend(peer, ref) <= TOLERANCE[w.torch_dtype]:
            us = time_gpu(peer.run).median_ms * 1e3
            print(f"{'varlen_attn':34s} {us:7.1f} us {w.tflops(us / 1e3):6.1f} TFLOP/s "
                  f"{us / floor_us:5.2f}x floor")


if __name__ == "__main__":
    main()
