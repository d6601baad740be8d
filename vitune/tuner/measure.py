"""Timing on the GPU: triton's do_bench (events, L2 flushed between calls, quantiles)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p20_ms: float
    p80_ms: float


def time_gpu(fn: Callable[[], object], warmup_ms: float = 25, rep_ms: float = 100) -> Timing:
    """Median and p20/p80 of `fn` in milliseconds; do_bench clears the L2 cache before every
    call, so each one reads its inputs from device memory."""
    from triton.testing import do_bench

    p20, median, p80 = do_bench(fn, warmup=warmup_ms, rep=rep_ms, quantiles=[0.2, 0.5, 0.8])
    return Timing(median_ms=median, p20_ms=p20, p80_ms=p80)
