"""Kernel benchmark: every backend on every workload, same run, same card; tidy rows."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable

import torch

from vitune.bench.backends import prepare_peer
from vitune.bench.environment import environment
from vitune.bench.measure import check_then_time
from vitune.bench.timer import Timing, time_gpu
from vitune.bench.workloads import Workload
from vitune.kernels.vision_attn.reference import reference_attention

log = logging.getLogger(__name__)


def row_label(row: dict) -> str:
    """A bench row's backend as tables and charts show it: rows measured with the rotary
    embedding, or into a given out=, apart from the plain ones."""
    return (row["backend"] + ("+rotary" if row.get("rotary") else "")
            + (" out=" if row.get("given_out") else ""))


def iter_bench(workloads: list[Workload], backends: list[str], device: torch.device,
               rotary: tuple[bool, ...] = (False,), given_out: tuple[bool, ...] = (False,),
               rounds: int = 1, timer: Callable[[Callable[[], object]], Timing] = time_gpu):
    """One tidy row per (workload, rotary, given_out, backend), yielded once that group's
    backends are measured: times, useful TFLOP/s, error, provenance. With rotary, q and k
    get the Qwen-VL rotary embedding first (fused in vitune's kernel; torch's fp32 rotary
    before the other backends, inside their timed call). With given_out, the result lands
    in a buffer the caller passes as out= (vitune's kernel writes it, another backend's
    result is copied into it). A backend whose output misses its tolerance is reported, not
    timed. With rounds > 1, the backends of one workload are timed again in turn, each
    round starting at another, and each row keeps the median of its rounds: the card's
    drift between two timings then reaches every backend alike instead of favouring the one
    timed at a good moment. (`timer`: the GPU timer; another for tests.)"""
    env = environment(device)
    for w in workloads:
        q, k, v = w.make_qkv(device)
        cu = w.cu_seqlens(device)
        for rotated in rotary:
            trig = w.make_rotary(device) if rotated else None
            ref = reference_attention(q, k, v, cu, compute_dtype=torch.float32, rotary=trig)
            for into_out in given_out:
                yield from _bench_backends(w, q, k, v, cu, trig, ref, backends, into_out,
                                           {**env, "rotary": rotated, "given_out": into_out},
                                           rounds, timer)
            del ref
        del q, k, v
        torch.cuda.empty_cache()


def _bench_backends(w: Workload, q, k, v, cu, trig, ref, backends: list[str],
                    given_out: bool, env: dict, rounds: int, timer):
    """The rows of one workload's inputs, with (trig) or without rotary."""
    rows, timed = [], []  # (timed: each passing backend's row index, runner and timings)
    for name in backends:
        peer = prepare_peer(name, w, q, k, v, cu, trig, given_out=given_out)
        row = {"workload": w.name, "backend": name, "regime": w.regime,
               "head_dim": w.head_dim, "heads": w.heads, "dtype": w.dtype,
               "segments": len(w.seqlens), "total_tokens": w.total_tokens,
               "max_seqlen": w.max_seqlen, **env}
        if peer is None:
            rows.append({**row, "status": "n/a"})
            continue
        m = check_then_time(peer, ref, w.torch_dtype, timer)
        if not m.passed:
            log.warning("%s on %s: relative error %.2e, not timed", name, w.name, m.rel_error)
            rows.append({**row, "status": "wrong", "rel_error": m.rel_error})
            continue
        rows.append({**row, "status": "ok", "rel_error": m.rel_error})
        timed.append((len(rows) - 1, peer, [m.timing]))
    for r in range(1, rounds):  # (round r starts at the r-th backend)
        shift = r % len(timed) if timed else 0
        for _, peer, timings in timed[shift:] + timed[:shift]:
            timings.append(timer(peer.run))
    for index, _, timings in timed:
        rows[index].update(_timing_fields(w, timings))
    yield from rows


def _timing_fields(w: Workload, timings: list[Timing]) -> dict:
    """A row's times: one timing's, or the median of each over the rounds."""
    median, p20, p80 = (statistics.median(getattr(t, field) for t in timings)
                        for field in ("median_ms", "p20_ms", "p80_ms"))
    fields = {"median_ms": median, "p20_ms": p20, "p80_ms": p80,
              "tflops": w.tflops(median), "gbps": w.min_bytes() / (median * 1e-3) / 1e9}
    if len(timings) > 1:
        fields |= {"rounds": len(timings),
                   "round_medians_ms": [t.median_ms for t in timings]}
    return fields
