"""Compile Triton kernels for a GPU in a process that never touches it: no CUDA context, no
GPU memory, the GPU may even be hidden (CUDA_VISIBLE_DEVICES="").

The tuner's compile processes only fill Triton's on-disk cache; the timing worker loads
the binaries. Triton's JIT asks its active driver for the current device, stream and
target before it compiles; a driver that answers with a fixed target lets the JIT's own
path compile. Called on meta tensors with the launch's shapes, strides and dtypes (a meta
tensor's address is 0: 16-byte aligned, as the tuner's CUDA inputs are), a warm-up gives
the real launch's specialisation, so the timing worker finds the binary in the cache.
Each compile process had made a CUDA context (and run a first kernel) for this before:
start-up each, their GPU memory for the whole run, and their teardown at its end
(docs/decisions.md, "Start-up": the first config timed 0.75-0.92 s sooner
without them, closing 0.2 s instead of 1.0 s).
"""

from __future__ import annotations


def compile_only_for(capability: tuple[int, int]) -> None:
    """From now on, this process's Triton JIT compiles for `capability` (e.g. (9, 0)) and
    touches no GPU: for warm-ups (compiles) only, since launching needs CUDA's driver.
    (The driver that does it is Triton internals: vitune.kernels.triton_compat.)"""
    from vitune.kernels import triton_compat

    triton_compat.compile_only_for(capability)
