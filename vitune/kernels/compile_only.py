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

import functools


def compile_only_for(capability: tuple[int, int]) -> None:
    """From now on, this process's Triton JIT compiles for `capability` (e.g. (9, 0)) and
    touches no GPU: for warm-ups (compiles) only, since launching needs CUDA's driver."""
    from triton.runtime.driver import driver

    driver.set_active(_target_driver(tuple(capability)))


@functools.cache
def _target_driver(capability: tuple[int, int]):
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.driver import CudaDriver

    class TargetOnlyDriver(CudaDriver):
        """CUDA's driver, answering the JIT's questions with constants. Its own __init__ is
        skipped: it loads helpers linked against the CUDA driver library and asks torch for
        the device, neither needed to compile."""

        def __init__(self) -> None:
            self.capability = capability
            self._target = GPUTarget("cuda", capability[0] * 10 + capability[1], 32)

        def get_current_target(self):
            return self._target

        def get_current_device(self) -> int:
            return 0

        def get_current_stream(self, device: int | None = None) -> int:
            return 0

        def get_device_capability(self, device: int | None = None) -> tuple[int, int]:
            return self.capability

    return TargetOnlyDriver()
