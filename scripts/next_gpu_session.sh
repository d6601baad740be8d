#!/usr/bin/env bash
# What the next GPU session should run, in stages that each fit one device call (10 min):
#   STAGE=ship    qwen2.5-vl tune (its wall time is the <= 10 min target), then the overhead,
#                 encoder and lengths benchmarks with the configs it wrote
#   STAGE=grid    exhaustive sweep of the qwen2.5-vl buckets on all GPUs (a multi-GPU kind)
#   STAGE=scaling sampled search on 1 and on 2 GPUs (wall times), then
#                 scripts/compare_search.py against the sweep (carry results/gpu from the
#                 grid call, or run both on one warm machine)
#   STAGE=final   the whole GPU lane (every valid config), overhead and encoder benches,
#                 head_dim 72/88/128 benches
#   STAGE=probe   do split 72/88 configs on wgmma still miscompile with strides in units of 8?
#   STAGE=heads   tune the heads preset (d64/72/80/88/128) into a copy of the shipped YAML
#   STAGE=next    the first call of the next session: the default-config GPU tests on the
#                 new full default (m128n64w4s3 + tma; 64/96/128 never ran it), then
#                 `vitune bench` of that default at 64/72/80/88/128 against cuDNN/flash,
#                 the overhead bench three times and the encoder (with its no-attention
#                 floor)
#   STAGE=kernel  after a kernel change: A/B of the new choice (scripts/ab_configs.py), the
#                 GPU lane, and the head_dim 72/88 probe, in one call
#   STAGE=lane    the whole kernel lane (every valid config at 80/72/88) and the overhead bench
#   STAGE=tpe2    sampled search with one process per GPU, then compared with grid.db
#   STAGE=tune    qwen2.5-vl tune only
#   STAGE=tests   the whole GPU lane (incl. compile and CUDA graphs)
#   STAGE=check   the whole GPU lane, the overhead bench three times, the encoder bench
#   STAGE=retune  the built-in default's bench at 64-128, then the qwen2.5-vl tune and the
#                 lengths bench with what it wrote
#   STAGE=duo     on a 2-GPU machine: the overhead bench three times, the built-in default's
#                 bench, then the qwen2.5-vl tune on one GPU and on two (wall times)
#   STAGE=duosweep  then (carry results/gpu): the window bucket's exhaustive sweep on both
#                 GPUs, the searches against it (raw and re-timed), the lengths bench
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
# Each step has its own time limit, so a slow one leaves time (and $OUT) for the rest.
step() { local limit=$1; shift; echo "== $* (limit ${limit}s)"; local t0=$SECONDS
         timeout "$limit" "$@"; echo "== rc=$? in $((SECONDS - t0)) s"; }
case "${STAGE:-tests}" in
  ship)  # tune on this GPU, then measure everything with the configs it wrote
    step 360 python3 -m vitune.cli tune --gpu auto --preset qwen2.5-vl \
      --out "$DB/configs" --storage "sqlite:///$PWD/$DB/tpe.db" > "$OUT/tune.log" 2>&1
    tail -12 "$OUT/tune.log"
    export VITUNE_CONFIG_DIR=$PWD/$DB/configs
    step 40 python3 -m vitune.cli bench --overhead --out "$DB/overhead.jsonl"
    step 100 python3 -m vitune.cli bench --encoder qwen2.5-vl --out "$DB/encoder.jsonl"
    step "${BENCH_S:-150}" python3 -m vitune.cli bench --preset lengths \
      --out "$DB/bench-lengths.jsonl" > "$OUT/bench.log" 2>&1; tail -45 "$OUT/bench.log" ;;
  grid)  # the exhaustive sweep on every GPU (resumes: carry results/gpu and repeat)
    step 560 python3 -m vitune.cli tune --gpu auto --preset qwen2.5-vl --sampler grid \
      --trials 100000 --workers gpus --out /tmp/vt/grid --storage "sqlite:///$PWD/$DB/grid.db" \
      > "$OUT/grid.log" 2>&1; tail -12 "$OUT/grid.log" ;;
  scaling)  # the sampled search on one GPU, then on two (wall times), then the comparison
    for n in 1 2; do
      step 270 python3 -m vitune.cli tune --gpu auto --preset qwen2.5-vl \
        --workers $n --out /tmp/vt/tpe$n --storage "sqlite:///$PWD/$DB/tpe$n.db" \
        > "$OUT/tpe$n.log" 2>&1; tail -9 "$OUT/tpe$n.log"
    done
    if [ -f "$DB/grid.db" ]; then
      python3 scripts/compare_search.py "sqlite:///$PWD/$DB/grid.db" "sqlite:///$PWD/$DB/tpe1.db"
    fi ;;
  final)  # after a kernel change: its GPU tests, then overhead, encoder and head-dim benches
    step 200 python3 -m pytest -q -m gpu -n "${JOBS:-14}" -p no:cacheprovider \
      tests/test_kernel_gpu.py tests/test_compile.py > "$OUT/gpu_tests.log" 2>&1
    grep -E "^FAILED|passed|failed" "$OUT/gpu_tests.log" | tail -8
    export VITUNE_CONFIG_DIR=$PWD/vitune/configs
    step 40 python3 -m vitune.cli bench --overhead --out "$DB/overhead.jsonl"
    step 100 python3 -m vitune.cli bench --encoder qwen2.5-vl --out "$DB/encoder.jsonl"
    wl=$(for d in ${BENCH_DIMS:-72 88 128}; do for n in "windows 1920x1080" 64x256 16x1024 \
      4x4096 1x16384; do printf '%s d%s,' "$n" "$d"; done; done)
    step "${BENCH_S:-150}" python3 -m vitune.cli bench --preset lengths --workloads "${wl%,}" \
      --out "$DB/bench-dims.jsonl" > "$OUT/bench.log" 2>&1; tail -25 "$OUT/bench.log" ;;
  next)  # the new built-in default on the GPU: correctness at every head dim, then speed
    step 150 python3 -m pytest -q -m gpu -n "${JOBS:-12}" -p no:cacheprovider \
      tests/test_kernel_gpu.py -k "default_config or batched or tma or fp32 or misaligned" \
      > "$OUT/gpu_defaults.log" 2>&1; tail -3 "$OUT/gpu_defaults.log"
    wl="16x1024 d64,4x4096 d64,4x4096 d72,1x16384 d72,4x4096 d80,1x16384 d80,4x4096 d88"
    wl="$wl,1x16384 d88,4x4096 d128,1x16384 d128"
    step 150 python3 -m vitune.cli bench --preset lengths --workloads "$wl" \
      --backends vitune-default,vitune-auto,sdpa-cudnn,sdpa-flash,varlen_attn \
      --out "$DB/bench-default.jsonl" > "$OUT/bench-default.log" 2>&1
    tail -16 "$OUT/bench-default.log"
    for i in 1 2 3; do  # the selector's < 10 us: several runs, as runs differ by ~3 us
      step 40 python3 -m vitune.cli bench --overhead --out "$DB/overhead-$i.jsonl"; done
    step 100 python3 -m vitune.cli bench --encoder qwen2.5-vl --out "$DB/encoder.jsonl" ;;
  lane)  # after a rule change: every valid config, then the host overhead
    step 330 python3 -m pytest -q -m gpu -n "${JOBS:-14}" -p no:cacheprovider \
      tests/test_kernel_gpu.py tests/test_compile.py > "$OUT/gpu_tests.log" 2>&1
    grep -E "^FAILED|passed|failed" "$OUT/gpu_tests.log" | tail -8
    step 60 python3 -m vitune.cli bench --overhead --out "$DB/overhead.jsonl" ;;
  tpe2)  # the sampled search on every GPU (wall time), against the sweep in grid.db
    step 560 python3 -m vitune.cli tune --gpu auto --preset qwen2.5-vl --workers gpus \
      --out /tmp/vt/tpe2 --storage "sqlite:///$PWD/$DB/tpe2.db" > "$OUT/tpe2.log" 2>&1
    tail -9 "$OUT/tpe2.log"
    python3 scripts/compare_search.py "sqlite:///$PWD/$DB/grid.db" "sqlite:///$PWD/$DB/tpe2.db" ;;
  kernel)  # a new kernel choice: is it faster, is every valid config right, and at 72/88?
    step 140 python3 scripts/ab_configs.py --field "${FIELD:-tma}" --head-dims 80,128,72 \
      > "$OUT/ab.log" 2>&1; tail -8 "$OUT/ab.log"
    step 300 python3 -m pytest -q -m gpu -n "${JOBS:-14}" -p no:cacheprovider \
      tests/test_kernel_gpu.py > "$OUT/gpu_tests.log" 2>&1
    grep -E "^FAILED|passed|failed" "$OUT/gpu_tests.log" | tail -8
    step 130 python3 scripts/probe_rules.py --jobs 14 --warps 4,8 > "$OUT/probe.log" 2>&1
    grep -c "^ok" "$OUT/probe.log"; grep "^BAD" "$OUT/probe.log" | head -12; tail -1 "$OUT/probe.log" ;;
  probe)  # split head_dim 72/88 configs the split-on-wgmma rule rejects (4 and 8 warps)
    step 400 python3 scripts/probe_rules.py --jobs 12 --warps 4,8 > "$OUT/probe.log" 2>&1
    grep -c "^ok" "$OUT/probe.log"; grep "^BAD" "$OUT/probe.log" | head -20; tail -1 "$OUT/probe.log" ;;
  heads)  # tune head dims 64/72/80/88/128 (window and full) into a copy of the shipped file
    mkdir -p "$DB/configs"; cp vitune/configs/*.yaml "$DB/configs/" 2>/dev/null
    step 560 python3 -m vitune.cli tune --gpu auto --preset heads \
      --out "$DB/configs" --storage "sqlite:///$PWD/$DB/heads.db" > "$OUT/heads.log" 2>&1
    tail -16 "$OUT/heads.log" ;;
  check)  # every GPU test, then the selector's overhead (runs differ by ~3 us) and the encoder
    step 380 python3 -m pytest -q -m gpu -n "${JOBS:-14}" -p no:cacheprovider \
      tests/test_kernel_gpu.py tests/test_compile.py > "$OUT/gpu_tests.log" 2>&1
    grep -E "^FAILED|passed|failed" "$OUT/gpu_tests.log" | tail -8
    for i in 1 2 3; do
      step 40 python3 -m vitune.cli bench --overhead --out "$DB/overhead-$i.jsonl"; done
    step 100 python3 -m vitune.cli bench --encoder qwen2.5-vl --out "$DB/encoder.jsonl" ;;
  retune)  # the built-in default against the peers, then a tune and the lengths bench
    wl="16x1024 d64,4x4096 d64,4x4096 d72,1x16384 d72,4x4096 d80,1x16384 d80,4x4096 d88"
    wl="$wl,1x16384 d88,4x4096 d128,1x16384 d128"
    step 140 python3 -m vitune.cli bench --preset lengths --workloads "$wl" \
      --backends vitune-default,sdpa-cudnn,sdpa-flash,varlen_attn \
      --out "$DB/bench-default.jsonl" > "$OUT/bench-default.log" 2>&1
    tail -14 "$OUT/bench-default.log"
    step 300 python3 -m vitune.cli tune --gpu auto --preset qwen2.5-vl \
      --out "$DB/configs" --storage "sqlite:///$PWD/$DB/tpe.db" > "$OUT/tune.log" 2>&1
    tail -12 "$OUT/tune.log"; cp "$DB/configs/"*.yaml "$OUT/" 2>/dev/null
    export VITUNE_CONFIG_DIR=$PWD/$DB/configs
    step 140 python3 -m vitune.cli bench --preset lengths \
      --out "$DB/bench-lengths.jsonl" > "$OUT/bench.log" 2>&1; tail -45 "$OUT/bench.log" ;;
  duo)  # host overhead and the default on GPU 0, then the search on one GPU and on two
    for i in 1 2 3; do
      step 40 python3 -m vitune.cli bench --overhead --out "$DB/overhead-$i.jsonl"; done
    wl="16x1024 d64,4x4096 d64,4x4096 d72,1x16384 d72,4x4096 d80,1x16384 d80,4x4096 d88"
    wl="$wl,1x16384 d88,4x4096 d128,1x16384 d128"
    step 120 python3 -m vitune.cli bench --preset lengths --workloads "$wl" \
      --backends vitune-default,sdpa-cudnn,sdpa-flash,varlen_attn \
      --out "$DB/bench-default.jsonl" > "$OUT/bench-default.log" 2>&1
    tail -12 "$OUT/bench-default.log"
    # Each run compiles into its own Triton cache: the second would else load the first's
    # binaries (2026-11-27: compile time per bucket 41-90 s against 128-136 s), flattering it.
    export TRITON_CACHE_DIR=/tmp/triton-tpe1
    step 280 python3 -m vitune.cli tune --gpu auto --preset qwen2.5-vl --workers 1 \
      --out "$DB/configs" --storage "sqlite:///$PWD/$DB/tpe1.db" > "$OUT/tpe1.log" 2>&1
    tail -9 "$OUT/tpe1.log"; cp "$DB/configs/"*.yaml "$OUT/" 2>/dev/null
    export TRITON_CACHE_DIR=/tmp/triton-tpe2
    step 200 python3 -m vitune.cli tune --gpu auto --preset qwen2.5-vl --workers gpus \
      --out /tmp/vt/tpe2 --storage "sqlite:///$PWD/$DB/tpe2.db" > "$DB/tpe2.log" 2>&1
    tail -9 "$DB/tpe2.log" ;;
  duosweep)  # the window bucket's sweep, the searches against it, the tuned lengths bench
    # (SIGINT at the limit: the tuner stops its worker processes, which a SIGTERM'd run
    # left timing on the GPUs, spoiling the re-timing after it on 2026-11-27)
    step 330 timeout -s INT -k 30 320 python3 -m vitune.cli tune --gpu auto \
      --preset qwen2.5-vl --sampler grid --trials 100000 --workers gpus \
      --buckets d80-bfloat16-window-L64 --out /tmp/vt/grid \
      --storage "sqlite:///$PWD/$DB/grid.db" > "$OUT/grid.log" 2>&1; tail -6 "$OUT/grid.log"
    for n in 1 2; do python3 scripts/compare_search.py "sqlite:///$PWD/$DB/grid.db" \
      "sqlite:///$PWD/$DB/tpe$n.db"; done 2>&1 | tee "$OUT/compare.log"
    for n in 1 2; do step 40 python3 scripts/retime_bests.py "sqlite:///$PWD/$DB/grid.db" \
      "sqlite:///$PWD/$DB/tpe$n.db"; done 2>&1 | tee "$OUT/retime.log"
    export VITUNE_CONFIG_DIR=$PWD/$DB/configs
    step 140 python3 -m vitune.cli bench --preset lengths \
      --out "$DB/bench-lengths.jsonl" > "$OUT/bench.log" 2>&1; tail -30 "$OUT/bench.log" ;;
  tune)  time python3 -m vitune.cli tune --gpu auto --preset qwen2.5-vl \
           --out "$DB/configs" --storage "sqlite:///$PWD/$DB/tpe.db" 2>&1 | tail -40 ;;
  tests) python3 -m pytest -m gpu -q -n "${JOBS:-14}" -p no:cacheprovider tests/ \
           > "$OUT/gpu_tests.log" 2>&1; grep -E "^FAILED|passed|failed" "$OUT/gpu_tests.log" | tail ;;
esac
