"""Imported last by the fork server that a run's GPU workers are forked from
(vitune.tuner.isolation.FORK_SERVER_PRELOAD): Triton's CUDA helper module is built once,
there, without starting CUDA. With an empty Triton cache each of the 16 workers a run forks
at once built it with the C compiler as it started (docs/perf-notes.md, twelfth session)."""

from vitune.kernels.touch import build_driver_helpers

HELPERS_BUILT = build_driver_helpers()
