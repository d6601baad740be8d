#!/usr/bin/env bash
# The fused rotary and the real-model path in one call on a CUDA machine (docs/benchmarks.md):
#   tests    the GPU tests of the rotary kernels, the transformers towers, compile/graphs
#   kernels  `vitune bench --preset rotary --rotary both` (with and without rotary, one run),
#            and the context preset without rotary; BASELINE=<checkout> runs the same
#            no-rotary benches on another tree in the same call (no regression, same card)
#   towers   `vitune bench --encoder` on transformers' Qwen2.5-VL and Qwen3-VL towers
#   tune     `vitune tune --rotary` (the qwen2.5-vl preset with rotary fused), then the
#            rotary kernel bench again with the tuned file
# STAGES picks (default: tests,kernels,towers). Logs and JSON lines go to ${OUT:-results}.
set -uo pipefail
OUT=${OUT:-results}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
STAGES=${STAGES:-tests,kernels,towers}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv
python3 -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', \
triton.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
if [[ $STAGES == *tests* ]]; then
  python3 -m pytest -m gpu -q -n "${JOBS:-8}" -p no:cacheprovider \
    ${TESTS:-tests/test_rotary.py tests/test_hf_towers.py tests/test_compile.py tests/test_kernel_gpu.py} \
    -k "not every_valid_config" 2>&1 | tee "$OUT/gpu_tests.log" | tail -15
fi
if [[ $STAGES == *kernels* ]]; then
  python3 -m vitune.cli bench --preset rotary --rotary both \
    --backends vitune-auto,varlen_attn --out "$OUT/rotary.jsonl" 2>&1 | tee "$OUT/rotary.log"
  [ "${CONTEXT:-1}" = 1 ] && python3 -m vitune.cli bench --preset context \
    --backends vitune-auto --out "$OUT/context.jsonl" > "$OUT/context.log" 2>&1
  if [ -n "${BASELINE:-}" ]; then
    for preset in rotary context; do
      (cd "$BASELINE" && PYTHONPATH=$PWD python3 -m vitune.cli bench --preset "$preset" \
        --backends vitune-auto --out "$OUT/$preset-baseline.jsonl" \
        > "$OUT/$preset-baseline.log" 2>&1)
    done
  fi
  python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def rows(name):
    path = out / name
    return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []
base = {(r["workload"]): r for n in ("rotary-baseline.jsonl", "context-baseline.jsonl")
        for r in rows(n) if r["status"] == "ok"}
now = rows("rotary.jsonl") + rows("context.jsonl")
plain = {r["workload"]: r for r in now if r["status"] == "ok" and not r.get("rotary")
         and r["backend"] == "vitune-auto"}
print(f"{'workload':34s} {'backend':12s} {'rotary':>6s} {'ms':>8s} {'TFLOP/s':>8s} "
      f"{'vs no-rot':>9s} {'vs base':>8s}")
for r in now:
    if r["status"] != "ok":
        print(f"{r['workload']:34s} {r['backend']:12s} {str(r.get('rotary')):>6s} {r['status']}")
        continue
    p, b = plain.get(r["workload"]), base.get(r["workload"])
    vs_plain = r["median_ms"] / p["median_ms"] if p and r["backend"] == "vitune-auto" else None
    vs_base = r["median_ms"] / b["median_ms"] if b and r["backend"] == "vitune-auto" \
        and not r.get("rotary") else None
    fmt = lambda x: f"{x:.3f}" if x else "-"
    print(f"{r['workload']:34s} {r['backend']:12s} {str(r.get('rotary')):>6s} "
          f"{r['median_ms']:8.3f} {r['tflops']:8.1f} {fmt(vs_plain):>9s} {fmt(vs_base):>8s}")
PY
fi
if [[ $STAGES == *towers* ]]; then
  for tower in ${TOWERS:-qwen2.5-vl qwen3-vl}; do
    python3 -m vitune.cli bench --encoder "$tower" --reps "${REPS:-10}" \
      --out "$OUT/encoder-$tower.jsonl" 2>&1 | grep -v Warning | tee "$OUT/encoder-$tower.log"
  done
fi
if [[ $STAGES == *tune* ]]; then
  python3 -m vitune.cli tune --rotary --out "$OUT/tuned" ${TUNE_ARGS:-} 2>&1 \
    | tee "$OUT/tune.log" | tail -12
  VITUNE_CONFIG_DIR="$OUT/tuned" python3 -m vitune.cli bench --preset rotary --rotary both \
    --backends vitune-auto --out "$OUT/rotary-tuned.jsonl" 2>&1 | tee "$OUT/rotary-tuned.log"
fi
