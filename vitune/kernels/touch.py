"""A one-element Triton kernel that worker processes run (timing workers) or compile
(compile processes, which see no GPU) as they start.

A process's first Triton kernel pays for more than its own compile: the CUDA context, and
Triton's CUDA helpers and kernel launcher, which it builds with the C compiler when its
cache does not have them; a process's first compile, ~0.35 s of the compiler's own set-up.
Paid during start-up, while the tuner's main process is still setting up, they no longer
stretch the first configs of a run."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vitune.kernels.triton_compat import warmup_launcher


@triton.jit
def _increment(x_ptr):
    tl.store(x_ptr, tl.load(x_ptr) + 1)


def touch_gpu() -> int:
    """Run the kernel once on the current GPU; returns the value it wrote (1)."""
    x = torch.zeros(1, dtype=torch.int32, device="cuda")
    _increment[(1,)](x)
    return int(x.item())


def compile_touch() -> None:
    """Compile the kernel without running it (a compile process's first compile: under
    vitune.kernels.compile_only, for its target, with no GPU)."""
    warmup_launcher(_increment, (1,))(torch.empty(1, dtype=torch.int32, device="meta"))
