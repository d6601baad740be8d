#!/usr/bin/env bash
# The GPU lane on a CUDA machine, in stages (STAGES, comma-separated; default
# tests,kernels,towers). Logs and JSON lines go to $OUT (default results/gpu-lane: ignored by
# git); at the end, `vitune report` prints the tables of every bench file there, as
# docs/benchmarks.md shows them (copy the files into data/bench/<gpu>/ to publish them).
#   tests    the GPU tests of TESTS (default: rotary, transformers' towers, torch.compile and
#            CUDA graphs, the kernels; not every valid config), JOBS processes (8)
#   lane     the whole GPU test lane: `pytest -m gpu tests/`, every valid config included
#   kernels  `vitune bench --preset rotary --rotary both` (vitune-auto, vitune-rotate-first,
#            varlen_attn) ->
#            rotary.jsonl, and the context preset without rotary (CONTEXT=0: skip it) ->
#            context.jsonl; BASELINE=<another checkout> runs the same no-rotary benches on
#            that tree in the same call -> NAME-baseline.jsonl (no regression, same card)
#   peers    `vitune bench --preset lengths`, every backend -> lengths.jsonl
#   towers   `vitune bench --encoder` on transformers' towers TOWERS (default "qwen2.5-vl
#            qwen3-vl"), REPS forwards each (10) -> encoder-<tower>.jsonl
#   tune     `vitune tune --rotary --out $OUT/tuned $TUNE_ARGS`, then the rotary bench again
#            with the tuned file -> rotary-tuned.jsonl
#   out      `auto` against every backend it could pick, with and without out=, on the
#            context preset with the installed files, in 3 rounds -> context-out.jsonl
#   ship     the shipped <gpu>.yaml anew: `vitune tune` on the heads preset, qwen3-vl's rotary
#            buckets, qwen2.5-vl's rotary buckets and the qwen2.5-vl preset, merged into a copy of
#            the shipped file in $OUT/tuned (buckets not re-tuned keep their own provenance;
#            each run stopped after SHIP_S seconds, default 600, keeping every bucket it
#            crowned), then the `out` bench with it -> context-out-tuned.jsonl (copy
#            tuned/<gpu>.yaml into vitune/configs/ to ship it)
#   sweep    the tuner's exhaustive sweep (--sampler grid) of the qwen2.5-vl preset's buckets
#            (SWEEP_BUCKETS, comma-separated; default all), stopped after SWEEP_S seconds
#            (1200), kept as a sweep table -> sweep/table.jsonl (scripts/sweep_table.py: the
#            replay oracle of scripts/replay_search.py and compare_search.py)
# Wheels in .whl/ (Optuna and its database layer, for tune and sweep on a machine without
# them) are installed first, into /tmp/site.
set -uo pipefail
STAGES=${STAGES:-tests,kernels,towers}
for stage in ${STAGES//,/ }; do
  case $stage in tests|lane|kernels|peers|towers|tune|out|ship|sweep) ;;
    *) echo "gpu_lane.sh: unknown stage '$stage' (tests, lane, kernels, peers, towers, tune," \
         "out, ship, sweep)" >&2; exit 2 ;;
  esac
done
OUT=${OUT:-results/gpu-lane}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)  # (absolute: BASELINE runs from another tree)
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
has() { [[ ",$STAGES," == *",$1,"* ]]; }
vitune() { python3 -m vitune.cli "$@"; }

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu \
  --format=csv
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__,
'cuda', torch.version.cuda, torch.cuda.get_device_name())"
if has tests; then
  python3 -m pytest -m gpu -q -n "${JOBS:-8}" -p no:cacheprovider \
    ${TESTS:-tests/test_rotary.py tests/test_hf_towers.py tests/test_compile.py tests/test_kernel_gpu.py} \
    -k "not every_valid_config" 2>&1 | tee "$OUT/gpu_tests.log" | tail -15
fi
if has lane; then
  python3 -m pytest -m gpu -q -n "${JOBS:-8}" -p no:cacheprovider tests/ \
    > "$OUT/gpu_lane.log" 2>&1
  grep -E "^FAILED|^ERROR|passed|failed" "$OUT/gpu_lane.log" | tail -20
fi
if has kernels; then
  vitune bench --preset rotary --rotary both --backends vitune-auto,vitune-rotate-first,varlen_attn \
    --out "$OUT/rotary.jsonl" > "$OUT/rotary.log" 2>&1
  [ "${CONTEXT:-1}" = 1 ] && vitune bench --preset context --backends vitune-auto \
    --out "$OUT/context.jsonl" > "$OUT/context.log" 2>&1
  if [ -n "${BASELINE:-}" ]; then
    for preset in rotary context; do
      [ "$preset" = context ] && [ "${CONTEXT:-1}" != 1 ] && continue
      (cd "$BASELINE" && PYTHONPATH=$PWD python3 -m vitune.cli bench --preset "$preset" \
        --backends vitune-auto --out "$OUT/$preset-baseline.jsonl" \
        > "$OUT/$preset-baseline.log" 2>&1)
    done
  fi
fi
if has peers; then
  vitune bench --preset lengths --out "$OUT/lengths.jsonl" > "$OUT/lengths.log" 2>&1
fi
if has towers; then
  for tower in ${TOWERS:-qwen2.5-vl qwen3-vl}; do
    vitune bench --encoder "$tower" --reps "${REPS:-10}" --out "$OUT/encoder-$tower.jsonl" \
      2>&1 | grep -v Warning | tee "$OUT/encoder-$tower.log"
  done
fi
if has tune; then
  vitune tune --rotary --out "$OUT/tuned" ${TUNE_ARGS:-} 2>&1 | tee "$OUT/tune.log" | tail -12
  VITUNE_CONFIG_DIR="$OUT/tuned" vitune bench --preset rotary --rotary both \
    --backends vitune-auto,vitune-rotate-first --out "$OUT/rotary-tuned.jsonl" \
    > "$OUT/rotary-tuned.log" 2>&1
fi
given_out_bench() {  # (the out and ship stages)
  vitune bench --preset context --given-out both --rounds 3 \
    --backends vitune-auto,vitune-tuned,sdpa-cudnn,sdpa-flash,varlen_attn --out "$1" \
    > "${1%.jsonl}.log" 2>&1
}
if has out; then
  given_out_bench "$OUT/context-out.jsonl"
fi
if has ship; then
  mkdir -p "$OUT/tuned" && cp vitune/configs/*.yaml "$OUT/tuned/"
  # (heads first: a bucket two presets share keeps the model preset's workload, run last)
  for args in "--preset heads" "--preset qwen3-vl --rotary" "--preset qwen2.5-vl --rotary" \
              "--preset qwen2.5-vl"; do
    # (SIGINT at the limit: the run stops, and the buckets it crowned are in the file)
    timeout -s INT -k 30 "${SHIP_S:-600}" python3 -m vitune.cli tune --gpu auto $args \
      --out "$OUT/tuned" >> "$OUT/ship.log" 2>&1
    tail -4 "$OUT/ship.log"
  done
  VITUNE_CONFIG_DIR="$OUT/tuned" given_out_bench "$OUT/context-out-tuned.jsonl"
fi
if has sweep; then
  mkdir -p "$OUT/sweep"
  # (SIGINT at the limit: the tuner closes its worker processes and keeps what it measured)
  timeout -s INT -k 30 "${SWEEP_S:-1200}" python3 -m vitune.cli tune --gpu auto \
    --preset qwen2.5-vl --sampler grid --trials 100000 --workers 1 \
    ${SWEEP_BUCKETS:+--buckets "$SWEEP_BUCKETS"} --out "$OUT/sweep" \
    --storage "sqlite:///$OUT/sweep/sweep.db" > "$OUT/sweep/sweep.log" 2>&1
  tail -8 "$OUT/sweep/sweep.log"
  python3 scripts/sweep_table.py "sqlite:///$OUT/sweep/sweep.db" --out "$OUT/sweep/table.jsonl"
fi
if ls "$OUT"/*.jsonl >/dev/null 2>&1; then
  vitune report --out "$OUT/benchmarks.md" "$OUT"/*.jsonl && cat "$OUT/benchmarks.md"
fi
