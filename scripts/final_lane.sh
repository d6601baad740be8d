#!/usr/bin/env bash
# Bench first (short), then the whole GPU lane; everything lands in $OUT as it is measured.
set -uo pipefail
OUT=${OUT:-results}; mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem --format=csv,noheader
python3 -m vitune.cli bench --out "$OUT/bench.jsonl" > "$OUT/bench.log" 2>&1
tail -15 "$OUT/bench.log"
python3 -m pytest -m gpu -q -n "${JOBS:-14}" -p no:cacheprovider tests/test_kernel_gpu.py \
  > "$OUT/gpu_tests.log" 2>&1
grep -E "^FAILED|passed|failed" "$OUT/gpu_tests.log" | tail -12
