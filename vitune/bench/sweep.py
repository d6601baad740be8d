"""Exhaustive sweep: every valid kernel config, checked then timed, on given workloads."""

from __future__ import annotations

import logging
from functools import partial

import torch

from vitune.bench.backends import vitune_with
from vitune.bench.environment import environment
from vitune.bench.measure import check_then_time
from vitune.bench.timer import time_gpu
from vitune.bench.workloads import Workload
from vitune.kernels.triton_compat import compiler_errors
from vitune.kernels.vision_attn.reference import reference_attention
from vitune.kernels.vision_attn.space import valid_configs
from vitune.runtime.gpu import device_arch

log = logging.getLogger(__name__)


def sweep_configs(workloads: list[Workload], device: torch.device,
                  rep_ms: float = 50) -> list[dict]:
    """One row per (workload, config): status ok/wrong/error, times and useful TFLOP/s."""
    env = environment(device)
    arch = device_arch(device)
    rows = []
    for w in workloads:
        q, k, v = w.make_qkv(device)
        cu = w.cu_seqlens(device)
        ref = reference_attention(q, k, v, cu, compute_dtype=torch.float32)
        # (the window kernel where the tuner searches it: windows)
        for cfg in valid_configs(w.head_dim, w.torch_dtype, arch,
                                 windows=w.regime == "window"):
            row = {"workload": w.name, "regime": w.regime, "config": cfg.short(),
                   **cfg.to_dict(), **env}
            peer = vitune_with(cfg)(w, q, k, v, cu)
            try:
                m = check_then_time(peer, ref, w.torch_dtype, partial(time_gpu, rep_ms=rep_ms))
            except compiler_errors() as exc:  # recorded, never timed
                rows.append({**row, "status": "error", "error": f"{type(exc).__name__}: {exc}"})
                continue
            if not m.passed:
                rows.append({**row, "status": "wrong", "rel_error": m.rel_error})
                continue
            t = m.timing
            rows.append({**row, "status": "ok", "rel_error": m.rel_error, "median_ms": t.median_ms,
                         "p20_ms": t.p20_ms, "p80_ms": t.p80_ms,
                         "tflops": w.tflops(t.median_ms)})
            log.info("%s %s %.1f TFLOP/s", w.name, cfg.short(), rows[-1]["tflops"])
        torch.cuda.empty_cache()
    return rows
