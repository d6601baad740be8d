"""Check the shared-memory estimate of descriptor configs on Hopper's wgmma path (which
leaves out the P tile) against the compiler: every config that the P tile alone would push
over the budget, plus a random sample of the others, compiled ahead for sm_90 (no GPU
needed). Prints one line per config and exits 1 if any real figure exceeds its estimate
or the budget.

    python scripts/check_smem_estimate.py [--sample 30] [--jobs 2]
"""

from __future__ import annotations

import argparse
import random
import sys
from concurrent.futures import ProcessPoolExecutor

import torch

from vitune.kernels.arch import HOPPER
from vitune.kernels.vision_attn.aot import _compile_or_reason
from vitune.kernels.vision_attn.space import estimate_smem_bytes, valid_configs

HEAD_DIMS = (72, 80, 88, 96, 128, 192, 256)


def cases(sample: int) -> list[tuple]:
    dtype, budget = torch.bfloat16, HOPPER.smem_per_block
    edge, rest = [], []
    for d in HEAD_DIMS:
        for cfg in valid_configs(d, dtype, HOPPER):
            if not (cfg.tma and cfg.block_m >= 64 and cfg.num_warps >= 4):
                continue
            with_p = estimate_smem_bytes(cfg, d, dtype)  # the arch-free estimate counts P
            (edge if with_p > budget else rest).append((cfg, d))
    return edge + random.Random(0).sample(rest, min(sample, len(rest)))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sample", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    todo = cases(args.sample)
    bad = 0
    with ProcessPoolExecutor(args.jobs) as pool:
        results = pool.map(_compile_or_reason,
                           [(cfg, d, torch.bfloat16, 90) for cfg, d in todo])
        for (cfg, d), info in zip(todo, results, strict=True):
            estimate = estimate_smem_bytes(cfg, d, torch.bfloat16, HOPPER)
            if isinstance(info, str):
                bad += 1
                print(f"BAD d{d} {cfg.short()}: {info}", flush=True)
                continue
            ok = info.shared_bytes <= min(estimate, HOPPER.smem_per_block)
            bad += not ok
            print(f"{'ok ' if ok else 'BAD'} d{d} {cfg.short():32s} real {info.shared_bytes:7d} "
                  f"estimate {estimate:7d} ({info.shared_bytes / estimate:.2f}) "
                  f"tma loads {info.tma_loads}", flush=True)
    print(f"{len(todo) - bad}/{len(todo)} within the estimate and the budget")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
