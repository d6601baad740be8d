"""A/B one kernel choice on the GPU: each base config with the field off and on, on full and
window workloads, checked against the float32 reference, timed like `vitune bench`, with
SDPA cuDNN / flash beside it. Launches directly (the validity rules are bypassed, so a
config the rules reject shows whether it is right); prints one table.

    python scripts/ab_configs.py [--field tma] [--head-dims 80,64,128,72,88]
"""

from __future__ import annotations

import argparse
import functools
from dataclasses import replace

import torch

from vitune.kernels.vision_attn.launch import launch_vision_attention
from vitune.kernels.vision_attn.reference import TOLERANCE, reference_attention, relative_error
from vitune.kernels.vision_attn.space import KernelConfig, check_config
from vitune.runtime.api import device_arch
from vitune.tuner.measure import time_gpu
from vitune.tuner.peers import PEERS, check_backend
from vitune.tuner.workloads import Workload, qwen_window_seqlens

BASES = {
    "full": [KernelConfig(block_m=128, block_n=64, num_warps=8, num_stages=2),
             KernelConfig(block_m=128, block_n=128, num_warps=8, num_stages=2),
             KernelConfig(block_m=128, block_n=64, num_warps=4, num_stages=3),
             KernelConfig(block_m=256, block_n=64, num_warps=8, num_stages=3,
                          heads_fastest=True),
             KernelConfig(block_m=128, block_n=128, num_warps=8, num_stages=3)],
    "window": [KernelConfig(block_m=64, block_n=32, num_warps=2, num_stages=2,
                            heads_fastest=True),
               KernelConfig(block_m=64, block_n=64, num_warps=4, num_stages=2,
                            heads_fastest=True),
               KernelConfig(block_m=128, block_n=64, num_warps=4, num_stages=2,
                            heads_fastest=True)],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--field", default="tma")
    parser.add_argument("--head-dims", default="80,64,128,72,88")
    args = parser.parse_args()
    device = torch.device("cuda")
    arch = device_arch(device)
    rows = []
    for d in (int(x) for x in args.head_dims.split(",")):
        for w in (Workload(f"4x4096 d{d}", (4096,) * 4, head_dim=d),
                  Workload(f"windows 1920x1080 d{d}", qwen_window_seqlens(1080, 1920),
                           head_dim=d)):
            q, k, v = w.make_qkv(device)
            cu = w.cu_seqlens(device)
            ref = reference_attention(q, k, v, cu, compute_dtype=torch.float32)
            peers = {}
            for name in ("sdpa-cudnn", "sdpa-flash", "varlen_attn"):
                peer = PEERS[name](w, q, k, v, cu)
                if peer is not None and check_backend(peer, ref) <= TOLERANCE[w.torch_dtype]:
                    peers[name] = w.tflops(time_gpu(peer.run).median_ms)
            best = {}
            for base in BASES[w.regime]:
                for on in (False, True):
                    cfg = replace(base, **{args.field: on})
                    rule = check_config(cfg, d, w.torch_dtype, arch)
                    out = torch.full_like(q, float("nan"))
                    run = functools.partial(launch_vision_attention, q, k, v, out, cu,
                                            d ** -0.5, cfg)
                    try:
                        run()
                        torch.cuda.synchronize()
                    except Exception as exc:  # noqa: BLE001 (a failed config is a result)
                        print(f"{w.name:28s} {cfg.short():36s} FAILED {type(exc).__name__}")
                        continue
                    err = relative_error(out, ref)
                    ok = err < TOLERANCE[w.torch_dtype]
                    tf = w.tflops(time_gpu(run).median_ms) if ok else float("nan")
                    if ok:
                        best[on] = max(best.get(on, 0.0), tf)
                    print(f"{w.name:28s} {cfg.short():36s} {tf:7.1f} TF/s  err {err:.1e}"
                          f"{'' if rule is None else '  (rules: ' + rule[:40] + ')'}",
                          flush=True)
            rows.append((w.name, best.get(False), best.get(True), peers))
            del q, k, v, ref
            torch.cuda.empty_cache()
    print(f"\n{'workload':28s} {args.field + '=off':>9s} {args.field + '=on':>9s}  peers")
    for name, off, on, peers in rows:
        peer_text = "  ".join(f"{k} {v:.1f}" for k, v in peers.items())
        print(f"{name:28s} {off or float('nan'):9.1f} {on or float('nan'):9.1f}  {peer_text}")


if __name__ == "__main__":
    main()
