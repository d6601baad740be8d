"""What runs inside the worker processes: one trial (build the workload's inputs, cached; run
the backend, check it against the reference, then time it: vitune.bench.measure; raises on
a wrong result), a compile process's compile of one config, and each kind of worker's
warm-up."""

from __future__ import annotations

import time
from dataclasses import dataclass

# workload -> [q, k, v, cu, reference or None], the last KEEP_INPUTS workloads used: a
# crown between two trials of a bucket re-times three other shapes, and the bucket's own
# inputs and reference are still there after it.
_inputs: dict = {}
KEEP_INPUTS = 4


@dataclass(frozen=True)
class TrialRequest:
    workload: object  # vitune.bench.workloads.Workload
    backend: str  # "triton", a peer name from vitune.bench.backends.PEERS, or PREPARE
    config: dict | None  # KernelConfig fields, for backend "triton"
    interpret: bool
    rep_ms: float = 100
    given_out: bool = False  # a peer's result copied into a given buffer (vitune's: always)
    vitune_rotation: bool = False  # with rotary, a library peer's q and k rotated by vitune


def _inputs_for(workload, device: str, reference: bool = True) -> list:
    """The workload's q, k, v, cu_seqlens, (when asked) its reference output and its rotary
    (cos, sin) or None, built once per worker process while it is among the last
    KEEP_INPUTS used (older ones are freed)."""
    entry = _inputs.pop(workload, None)
    if entry is None:
        while len(_inputs) >= KEEP_INPUTS:
            _inputs.pop(next(iter(_inputs)))
        entry = [*workload.make_qkv(device), workload.cu_seqlens(device), None,
                 workload.make_rotary(device) if workload.rotary else None]
    _inputs[workload] = entry  # (last: the most recently used)
    if reference and entry[4] is None:
        import torch

        from vitune.kernels.vision_attn.reference import reference_attention

        compute = torch.float64 if device == "cpu" else torch.float32
        entry[4] = reference_attention(*entry[:4], compute_dtype=compute, rotary=entry[5])
    return entry


def _start() -> bool:
    """torch, triton and the kernel imported; on a GPU, its context made and a first Triton
    kernel run (vitune.kernels.touch). Whether there is a GPU to run on."""
    import os

    import torch

    from vitune.kernels.vision_attn import launch  # noqa: F401

    if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        from vitune.kernels.touch import touch_gpu

        touch_gpu()
        return True
    return False


def warm_up() -> None:
    """What every trial worker needs, done as its process starts (IsolatedWorker warm_up),
    so the first trials do not pay for it."""
    _start()


WARM_UP = f"{__name__}:warm_up"


def warm_up_peers() -> None:
    """warm_up for the worker that times the peers: also each peer library's first call
    (vitune.bench.backends.warm_up_peers). Done in the trial worker it held the run's first
    trial up by ~5 s on the H100; in a worker of its own it overlaps the run's start (and
    the first crown's peers take 0.7 s instead of 6.0-7.6 s)."""
    if _start():
        from vitune.bench.backends import warm_up_peers as call_each_library

        call_each_library()


WARM_UP_PEERS = f"{__name__}:warm_up_peers"
# Compile processes yield the CPU to the timing worker and the search loop, whose latency
# the GPU waits on (a compile's ptxas inherits it); they are throughput, not latency.
COMPILER_NICENESS = 10
# A compile process's environment names the GPU's compute capability it compiles for
# (e.g. "9.0"); the GPU itself is hidden from it (vitune.tuner.compile_pool.compiler_env).
COMPILE_FOR = "VITUNE_COMPILE_FOR"


def compile_target() -> tuple[int, int]:
    """The compute capability this compile process compiles for, from its environment."""
    import os

    major, _, minor = os.environ.get(COMPILE_FOR, "").partition(".")
    if not (major.isdigit() and minor.isdigit()):
        raise ValueError(f"a compile process needs {COMPILE_FOR} set to the GPU's compute "
                         f"capability (e.g. 9.0), got {os.environ.get(COMPILE_FOR)!r}")
    return int(major), int(minor)


def warm_up_compiler() -> None:
    """warm_up for a compile process: lower priority, Triton set to compile for the target
    without a GPU (vitune.kernels.compile_only), and a first, tiny compile (its one-off
    costs, ~0.35 s, paid before the run's first configs wait on it)."""
    import os

    from vitune.kernels.compile_only import compile_only_for
    from vitune.kernels.touch import compile_touch

    os.nice(COMPILER_NICENESS)
    compile_only_for(compile_target())
    compile_touch()


WARM_UP_COMPILER = f"{__name__}:warm_up_compiler"
PREPARE = "prepare"  # a run_trial backend: only build the workload's inputs and reference


def precompile(req: TrialRequest) -> dict:
    """Compile vitune's kernel for `req.config` as the timing worker will launch it on the
    workload's inputs, without a GPU: on meta tensors of the same shapes and strides, for
    the target in the environment. Triton keeps the binary in its on-disk cache, so the
    timing worker only loads it. Several of these run at once (vitune.tuner.compile_pool)
    while one GPU times trials."""
    import torch

    from vitune.kernels.compile_only import compile_only_for
    from vitune.kernels.vision_attn.launch import launch_vision_attention
    from vitune.kernels.vision_attn.space import KernelConfig

    compile_only_for(compile_target())  # (where the warm-up failed, its error is raised here)
    w = req.workload
    q, k, v = w.make_qkv("meta")
    # (contiguous, as the timing worker's; torch.empty_like on a meta tensor goes through
    # torch's Python decompositions, which import sympy: 2-3 s of each process's first
    # compile on the H100 machine, docs/decisions.md, "Start-up")
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    trig = torch.empty(w.total_tokens, w.head_dim, device="meta")
    start = time.perf_counter()
    launch_vision_attention(q, k, v, out, w.cu_seqlens("meta"),
                            w.head_dim ** -0.5, KernelConfig.from_dict(req.config),
                            warmup=True, rotary=(trig, trig) if w.rotary else None)
    return {"compile_s": time.perf_counter() - start}


def run_trial(req: TrialRequest) -> dict:
    from functools import partial

    from vitune.bench.backends import prepare_peer, vitune_with
    from vitune.bench.measure import check_then_time
    from vitune.bench.timer import time_gpu, time_wall
    from vitune.kernels.vision_attn.space import KernelConfig

    w = req.workload
    q, k, v, cu, ref, rotary = _inputs_for(w, "cpu" if req.interpret else "cuda")
    if req.backend == PREPARE:
        return {}
    if req.backend == "triton":
        peer = vitune_with(KernelConfig.from_dict(req.config) if req.config else None)(
            w, q, k, v, cu, rotary)
    else:
        peer = prepare_peer(req.backend, w, q, k, v, cu, rotary, given_out=req.given_out,
                            vitune_rotation=req.vitune_rotation)
    if peer is None:
        raise ValueError(f"{req.backend} cannot run {w.name}")
    # (the interpreter's CPU wall time exercises the pipeline only)
    timer = time_wall if req.interpret else partial(time_gpu, rep_ms=req.rep_ms)
    m = check_then_time(peer, ref, w.torch_dtype, timer)
    if not m.passed:
        raise ValueError(f"wrong result: relative error {m.rel_error:.2e} > {m.tolerance}")
    t = m.timing
    return {"median_ms": t.median_ms, "p20_ms": t.p20_ms, "p80_ms": t.p80_ms,
            "rel_error": m.rel_error, "tflops": w.tflops(t.median_ms)}
