"""Host overhead of `vision_attention(backend="auto")` over launching the chosen kernel
directly: both loops run the same config on a shape whose GPU time is far below the host
time of a call, so the loop's wall time per call is the host's cost."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from vitune.kernels.vision_attn.launch import launch_vision_attention, run_launch
from vitune.runtime import api


def _per_call_us(ways: dict[str, Callable[[], object]], calls: int, repeats: int,
                 device: torch.device) -> dict[str, list[float]]:
    """Microseconds per call of each way, `repeats` samples each. The ways take turns within
    every repeat, so drift of the host (clocks, other processes) hits them alike."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for fn in ways.values():
        for _ in range(min(calls, 50)):  # compile, caches
            fn()
    sync()
    samples: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(repeats):
        for name, fn in ways.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            sync()
            samples[name].append((time.perf_counter() - start) / calls * 1e6)
    return samples


def host_overhead(device: torch.device, calls: int = 2000, repeats: int = 15,
                  tokens: int = 64, heads: int = 16, head_dim: int = 80,
                  dtype: torch.dtype = torch.bfloat16) -> list[dict]:
    """Median microseconds per call of each way to run one window-sized segment."""
    gen = torch.Generator().manual_seed(0)
    qkv = torch.randn(tokens, 3, heads, head_dim, generator=gen).to(device, dtype)
    q, k, v = qkv.unbind(1)
    cu = torch.tensor([0, tokens], dtype=torch.int32, device=device)
    out = torch.empty_like(q)
    scale = head_dim ** -0.5
    plan = api._plan_call(q, k, v, cu, tokens, None, out, None, "auto", False)
    if plan.backend != "triton":
        raise RuntimeError(f"the selector picks {plan.backend} here; this measures vitune's "
                           "kernel")
    # "direct" is the kernel's public launch with the chosen config; "planned" launches
    # with arguments computed beforehand, as auto's cached plan does (the floor of any call).
    ways = {
        "kernel launch (direct)":
            lambda: launch_vision_attention(q, k, v, out, cu, scale, plan.config),
        "kernel launch (planned)":
            lambda: run_launch(plan.launch, q, k, v, out, cu),
        "vision_attention auto, out=":
            lambda: api.vision_attention(q, k, v, cu, tokens, out=out),
        "vision_attention auto":
            lambda: api.vision_attention(q, k, v, cu, tokens),
        "vision_attention validate=True":
            lambda: api.vision_attention(q, k, v, cu, tokens, out=out, validate=True),
    }
    with torch.inference_mode():  # as a serving process runs its vision tower
        samples = _per_call_us(ways, calls, repeats, device)
    direct = samples["kernel launch (direct)"]
    # The overhead is the median of per-repeat differences (each pair ran back to back).
    return [{"way": name, "us_per_call": statistics.median(times),
             "overhead_us": statistics.median(t - d for t, d in zip(times, direct, strict=True)),
             "config": plan.config.short(), "grad_mode": "inference_mode",
             "tokens": tokens, "heads": heads, "head_dim": head_dim,
             "dtype": str(dtype).removeprefix("torch.")}
            for name, times in samples.items()]
