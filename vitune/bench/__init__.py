"""Measurement shared by the benchmarks and the tuner: workloads and presets, the backends
measured side by side, one check-then-time, the GPU timer, provenance; and the benchmarks
built on them (kernels, the config sweep, the encoder on real model code, host overhead)."""
