"""Probe configs that the split-on-wgmma rule rejects: run each (rules bypassed) in an
isolated worker on a window and a full shape and report its relative error and compile
time. Used to narrow the measured miscompile rules in vitune/kernels/vision_attn/space.py.
With --base-offset N, probe instead the valid configs that the rule governs (split head
dims on wgmma), with q, k, v and out starting N elements into their storage: do bases off
16-byte boundaries break them, as the runtime's precaution assumes?

    python scripts/probe_rules.py [--jobs 8] [--warps 2,4] [--head-dims 72,88]
        [--base-offset 4]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

HERE = os.path.dirname(os.path.abspath(__file__))


def check(payload: tuple[int, dict]) -> dict:
    """Worker side: both regimes for one config, launched directly (no validity rules)."""
    import torch

    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    from conftest import make_packed

    from vitune.kernels.vision_attn.launch import launch_vision_attention
    from vitune.kernels.vision_attn.reference import reference_attention, relative_error
    from vitune.kernels.vision_attn.space import KernelConfig
    from vitune.tuner.workloads import qwen_window_seqlens

    head_dim, fields, offset = payload
    cfg = KernelConfig.from_dict(fields)
    result = {}
    for name, lengths in (("window", list(qwen_window_seqlens(1024, 1024))),
                          ("full", [0, 1000, 517, 1])):
        q, k, v, cu = make_packed(lengths, 2, head_dim, torch.bfloat16, device="cuda", seed=5)
        if offset:  # the same values, `offset` elements into a larger buffer
            q, k, v = (torch.empty(x.numel() + offset, dtype=x.dtype, device="cuda")[offset:]
                       .view(x.shape).copy_(x) for x in (q, k, v))
        out = torch.empty(q.numel() + offset, dtype=q.dtype, device="cuda")[offset:]
        out = out.view(q.shape).fill_(float("nan"))
        start = time.perf_counter()
        launch_vision_attention(q, k, v, out, cu, head_dim ** -0.5, cfg)
        torch.cuda.synchronize()
        result[f"{name}_s"] = time.perf_counter() - start
        ref = reference_attention(q, k, v, cu, compute_dtype=torch.float32)
        result[name] = relative_error(out, ref)
    return result


def main() -> None:
    import torch

    from vitune.kernels.vision_attn.reference import TOLERANCE
    from vitune.kernels.vision_attn.space import (
        SEARCH_SPACE,
        KernelConfig,
        check_config,
        needs_aligned_strides,
    )
    from vitune.runtime.api import device_arch
    from vitune.tuner.isolation import IsolatedWorker

    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--warps", default="2")
    parser.add_argument("--head-dims", default="72,88")
    parser.add_argument("--base-offset", type=int, default=0)
    args = parser.parse_args()
    arch = device_arch(torch.device("cuda"))
    warps = {int(w) for w in args.warps.split(",")}
    cases = []
    for d in (int(x) for x in args.head_dims.split(",")):
        for bm in SEARCH_SPACE["block_m"]:
            for bn in SEARCH_SPACE["block_n"]:
                for w in sorted(warps):
                    for s in SEARCH_SPACE["num_stages"]:
                        for hf, tma in itertools.product((True, False), SEARCH_SPACE["tma"]):
                            cfg = KernelConfig(block_m=bm, block_n=bn, num_warps=w,
                                               num_stages=s, head_split=True, heads_fastest=hf,
                                               tma=tma)
                            reason = check_config(cfg, d, torch.bfloat16, arch)
                            if args.base_offset:
                                if reason is None and needs_aligned_strides(cfg, d, arch):
                                    cases.append((d, cfg))
                            elif reason and "on wgmma needs" in reason:
                                # Only the split-on-wgmma rule says no: does another one too?
                                padded = replace(cfg, head_split=False, tma=False)
                                if check_config(padded, d, torch.bfloat16, arch) is None:
                                    cases.append((d, cfg))
    print(f"{len(cases)} configs " + (f"split on wgmma, bases {args.base_offset} elements off"
                                      if args.base_offset else
                                      "rejected only by the split-on-wgmma rule"), flush=True)
    os.environ["PYTHONPATH"] = HERE + os.pathsep + os.environ.get("PYTHONPATH", "")
    workers = [IsolatedWorker("probe_rules:check") for _ in range(args.jobs)]
    tol = TOLERANCE[torch.bfloat16]

    def run(i: int) -> tuple[int, KernelConfig, object]:
        d, cfg = cases[i]
        return d, cfg, workers[i % args.jobs].call((d, cfg.to_dict(), args.base_offset), 300)

    bad = 0
    with ThreadPoolExecutor(args.jobs) as pool:
        # Worker i % jobs is used by one thread at a time: submit in rounds of `jobs`.
        for start in range(0, len(cases), args.jobs):
            for d, cfg, outcome in pool.map(run, range(start, min(start + args.jobs,
                                                                    len(cases)))):
                if outcome.ok:
                    r = outcome.value
                    ok = r["window"] < tol and r["full"] < tol
                    line = (f"window {r['window']:.1e} full {r['full']:.1e} "
                            f"first call {r['window_s']:.1f}s")
                else:
                    ok, line = False, outcome.reason[:120]
                bad += not ok
                print(f"{'ok ' if ok else 'BAD'} d{d} {cfg.short()}: {line}", flush=True)
    for w in workers:
        w.close()
    print(f"probe: {len(cases) - bad}/{len(cases)} passed")


if __name__ == "__main__":
    main()
