#!/usr/bin/env bash
# The GPU lane in one call on a CUDA machine: environment, GPU tests (parallel compiles),
# the peer benchmark and the exhaustive config sweep. Logs and results go to ${OUT:-results}.
set -uo pipefail
OUT=${OUT:-results}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu --format=csv
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
python3 -m pytest -m gpu -q -n "${JOBS:-8}" -p no:cacheprovider tests/test_kernel_gpu.py \
  2>&1 | tee "$OUT/gpu_tests.log" | tail -25
python3 -m vitune.cli bench --out "$OUT/bench.jsonl" 2>&1 | tee "$OUT/bench.log"
if [ "${SWEEP:-1}" = 1 ]; then
  timeout "${SWEEP_TIMEOUT:-900}" python3 -m vitune.cli -v sweep \
    --workloads "qwen windows 1920x1080 d80,1x4096 d80" \
    --out "$OUT/sweep.jsonl" > "$OUT/sweep.log" 2>&1
  tail -20 "$OUT/sweep.log"
fi
