"""Timing on the GPU: CUDA events around each call, the L2 cache flushed before it, and the
host kept ahead of the GPU so that the events time the kernels, not the launch work.

Why not triton's do_bench as it is: it records the start event and then calls `fn`. Where
`fn`'s host work (argument packing, tensor descriptors: about 70 us per call for TMA configs
on an H100) outlasts the flush the GPU is running meanwhile, the GPU waits between the
start event and the kernel and the wait is timed too: one window config then measured
47-60 TFLOP/s in fresh processes and 66 under a CUDA graph (docs/decisions.md, "The GPU
timer"): stretches where the host ran slower than usual left the GPU waiting. Here the
GPU first sleeps long enough for the host to queue a good part of the timed calls, and
where a call's host work outlasts its GPU work a short sleep before each start event makes
up the difference: the host stays ahead, the kernel starts on time.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

# Over the L2 of every card we tune for (H100/H200 50 MB, GB200 126 MB).
FLUSH_BYTES = 256 * 1024 * 1024
# The GPU's time per timed call is kept at least this many times the host's, so the host
# gains ground every call and a pause of the host (a GC pass) is absorbed by its lead.
HOST_MARGIN = 1.5
# The head start: the GPU sleeps through this share of the host's time for all timed calls
# (at most HEAD_START_MAX_MS), so the host may run that much slower than measured throughout.
HEAD_START_SHARE = 0.5
HEAD_START_MAX_MS = 50.0
ESTIMATE_CALLS = 5
ESTIMATE_HEAD_START_MAX_MS = 1000.0  # (a call with seconds of host work is timed as is)


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p20_ms: float
    p80_ms: float


def sleep_to_stay_ahead_ms(host_ms: float, gpu_ms: float) -> float:
    """GPU sleep to add to each timed call whose host work takes `host_ms` and whose flush
    and kernels take the GPU `gpu_ms`, so that the GPU's share is HOST_MARGIN x the host's."""
    return max(0.0, HOST_MARGIN * host_ms - gpu_ms)


@functools.cache
def _sleep_cycles_per_ms(device_index: int) -> float:
    """torch.cuda._sleep counts SM clock cycles: how many make a millisecond here."""
    import torch

    cycles = 1_000_000
    torch.cuda._sleep(1000)
    start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
    start.record()
    torch.cuda._sleep(cycles)
    end.record()
    end.synchronize()
    return cycles / start.elapsed_time(end)


def _gpu_sleep(ms: float) -> None:
    import torch

    if ms > 0:
        torch.cuda._sleep(int(ms * _sleep_cycles_per_ms(torch.cuda.current_device())))


def time_gpu(fn: Callable[[], object], warmup_ms: float = 25, rep_ms: float = 100) -> Timing:
    """Median and p20/p80 of `fn`'s GPU time in milliseconds, each call reading its inputs
    from device memory (the L2 is flushed before it)."""
    import torch

    flush = torch.empty(FLUSH_BYTES // 4, dtype=torch.int32, device="cuda")
    fn()
    torch.cuda.synchronize()

    def flushed_calls(n: int) -> None:
        for _ in range(n):
            flush.zero_()
            fn()

    t0 = time.perf_counter()
    flushed_calls(ESTIMATE_CALLS)
    host_ms = (time.perf_counter() - t0) * 1e3 / ESTIMATE_CALLS
    torch.cuda.synchronize()

    # The GPU's own time per flushed call, measured with the host already ahead.
    start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
    _gpu_sleep(min(2 * HOST_MARGIN * host_ms * ESTIMATE_CALLS, ESTIMATE_HEAD_START_MAX_MS))
    start.record()
    flushed_calls(ESTIMATE_CALLS)
    end.record()
    end.synchronize()
    gpu_ms = max(start.elapsed_time(end) / ESTIMATE_CALLS, 1e-3)
    sleep_ms = sleep_to_stay_ahead_ms(host_ms, gpu_ms)

    for _ in range(max(1, int(warmup_ms / gpu_ms))):
        fn()
    n = max(1, int(rep_ms / gpu_ms))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    _gpu_sleep(min(HEAD_START_SHARE * n * host_ms, HEAD_START_MAX_MS))
    for s, e in zip(starts, ends, strict=True):
        flush.zero_()
        _gpu_sleep(sleep_ms)
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    times = torch.tensor([s.elapsed_time(e) for s, e in zip(starts, ends, strict=True)])
    p20, median, p80 = times.quantile(torch.tensor([0.2, 0.5, 0.8])).tolist()
    return Timing(median_ms=median, p20_ms=p20, p80_ms=p80)


def time_wall(fn: Callable[[], object], calls: int = 3) -> Timing:
    """The median host wall time of a few calls, in milliseconds: the Triton interpreter's
    CPU time, which exercises a pipeline and says nothing of a GPU."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    median = statistics.median(times)
    return Timing(median_ms=median, p20_ms=median, p80_ms=median)
