#!/usr/bin/env bash
# What the next GPU session should run, in stages that each fit one device call (10 min):
#   STAGE=tune    qwen2.5-vl tune on the GPU present (wall time = the <= 10 min target)
#   STAGE=grid    the exhaustive sweep of the same buckets (resumes: repeat the call until it
#                 finishes), then scripts/compare_search.py
#   STAGE=bench   kernel bench over the lengths preset, encoder bench, plots
#   STAGE=tests   the whole GPU lane (incl. compile and CUDA graphs)
# Optuna is not on the device image: run ../shared/device/fetch-wheels.sh here first, carry
# .whl, and this script installs it. Studies live in results/gpu (name it in carry to resume
# on a fresh machine); they and every result are copied to $OUT at the end of each call.
set -uo pipefail
OUT=${OUT:-results}; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
DB=results/gpu; mkdir -p "$DB"
trap 'cp -r "$DB"/. "$OUT"/ 2>/dev/null' EXIT
case "${STAGE:-tests}" in
  tune)  time python3 -m vitune.cli tune --gpu auto --preset qwen2.5-vl --trials 40 \
           --out "$DB/configs" --storage "sqlite:///$PWD/$DB/tpe.db" 2>&1 | tail -40 ;;
  grid)  python3 -m vitune.cli tune --gpu auto --preset qwen2.5-vl --sampler grid --trials 100000 \
           --out "$DB/grid-configs" --storage "sqlite:///$PWD/$DB/grid.db" 2>&1 | tail -20
         python3 scripts/compare_search.py "sqlite:///$PWD/$DB/grid.db" "sqlite:///$PWD/$DB/tpe.db" ;;
  bench) python3 -m vitune.cli bench --preset lengths --out "$DB/bench-lengths.jsonl" | tail -30
         python3 -m vitune.cli bench --encoder qwen2.5-vl --out "$DB/encoder.jsonl"
         python3 -m vitune.cli plot --results "$DB/bench-lengths.jsonl" --out "$DB/plots" ;;
  tests) python3 -m pytest -m gpu -q -n "${JOBS:-14}" -p no:cacheprovider tests/ \
           > "$OUT/gpu_tests.log" 2>&1; grep -E "^FAILED|passed|failed" "$OUT/gpu_tests.log" | tail ;;
esac
