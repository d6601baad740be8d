"""Check, then time: one backend's output on a workload is compared with the reference, and
only a backend within its dtype's tolerance is timed. The tuner's trials, the sweep and
the kernel benchmark all measure through `check_then_time`, so all three judge an output
by the same test."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from vitune.bench.backends import Prepared, check_backend
from vitune.bench.timer import Timing, time_gpu
from vitune.kernels.vision_attn.reference import TOLERANCE


@dataclass(frozen=True)
class Measurement:
    rel_error: float  # of the output against the reference
    tolerance: float  # the most its dtype allows
    timing: Timing | None  # None: the output missed the tolerance and was not timed

    @property
    def passed(self) -> bool:
        return self.timing is not None


def within_tolerance(rel_error: float, dtype: torch.dtype) -> bool:
    """Whether an output with this relative error passes (at most the dtype's tolerance;
    NaN never passes)."""
    return rel_error <= TOLERANCE[dtype]


def check_then_time(backend: Prepared, reference: torch.Tensor, dtype: torch.dtype,
                    timer: Callable[[Callable[[], object]], Timing] = time_gpu
                    ) -> Measurement:
    """Run `backend` once and compare its output with `reference`; time it with `timer`
    (the GPU timer by default) only if it passed. Errors of the run (a compile failure, out
    of resources) propagate to the caller, which knows which it expects."""
    err = check_backend(backend, reference)
    if not within_tolerance(err, dtype):
        return Measurement(err, TOLERANCE[dtype], None)
    return Measurement(err, TOLERANCE[dtype], timer(backend.run))
