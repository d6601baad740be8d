#!/usr/bin/env bash
# GPU work in stages that each fit one device call (10 min). The tenth session ran duo4
# on 2 x H200 (issue 3: the search without rounds, 1.61x on the means, one GPU 120-126 s,
# two 76 s). The eleventh to thirteenth had one-GPU machines only: the current code tunes
# the preset on an H100 in 98-123 s (the machines differ; compare within a call), and the
# H100 sweeps of the current space are committed (results/h100-2026-12-06-s11/). Next,
# where two GPUs are lent: each search process takes buckets of its own (board.py; run on
# one GPU by STAGE=two1, not yet on two); `STAGE=duo4 RUNS="tpe2a:gpus tpe1a:1
# tpe2s:gpus::all tpe1b:1 tpe2b:gpus"` (tpe2s: --share all, both GPUs on each bucket's
# study, as the target's "2 GPUs on one study" reads literally), ~8 min on 2 x H200.
# STAGE=startup: where a run's first seconds go (twelfth and thirteenth sessions).
# Left: the lengths bench with h200.yaml, heads on an H200, window-kernel variants for
# head dims 72 and 88. A search against a sweep on one GPU: `STAGE=duo4 RUNS=tpe1a:1`,
# then `STAGE=sweep1 SEARCH_DB=results/gpu/tpe1a.db [BUCKETS=...] SWEEP_S=...`.
#   STAGE=spread    one H100, ~3 min: window configs timed in fresh workers by the tuner's
#                   events, under CUDA graphs, and host time per call
#   STAGE=timer     after a change to the GPU timer (vitune/tuner/measure.py): its GPU test
#                   and the window configs' spread in fresh workers under it (~2 min)
#   STAGE=retune    one H100: the qwen2.5-vl tune (ship its <gpu>.yaml; the 10-minute target)
#   STAGE=heads     then tune head dims 64/72/80/88/128 into the same file (into a copy of
#                   the shipped file where no retune left one in results/gpu/configs)
#   STAGE=benches   then the built-in default's bench at 64-128 and the lengths bench
#   STAGE=sweep1    one GPU: the window bucket's exhaustive sweep, then the search of a tune
#                   run (SEARCH_DB, default the sixth session's committed tune-qwen.db)
#                   against it, raw and re-timed side by side
#   STAGE=startup   one GPU, ~2 min: where a run's first seconds go, process by process
#                   (scripts/startup_probe.py: fork, CUDA, context, first kernel, compile)
#   STAGE=two1      one GPU, ~2 min: two search processes on it, a check of the board, the
#                   member process and the crowns on a GPU (not a speed)
#   STAGE=duo       on a 2-GPU machine: how long the workers take to start
#                   (scripts/startup_probe.py), then the qwen2.5-vl tune on one GPU and on
#                   both (wall times for the 1.7x target; each run with its own Triton cache)
#   STAGE=duo4      on a 2-GPU machine, ~9 min: 1 GPU, 2, 2, 1 (both orders, one machine)
#   STAGE=duosweep  then, same machine (results/gpu stays there; else carry it): the window
#                   bucket's exhaustive sweep on both GPUs, both searches against it (raw and
#                   re-timed side by side), and the lengths bench with the 1-GPU run's file
# and when the code they cover changes:
#   STAGE=check     the whole GPU lane, the overhead bench three times, the encoder bench
#   STAGE=kernel    a new kernel choice: A/B (scripts/ab_configs.py, FIELD=...), the kernel
#                   lane and the head_dim 72/88 probe
#   STAGE=probe     split head_dim 72/88 configs the split-on-wgmma rule rejects
#   STAGE=probebase the valid split-on-wgmma configs at 80/72 with bases 8 bytes off 16-byte
#                   boundaries: is the runtime's padding fallback for them needed?
#   STAGE=specialize  one GPU, ~4 min: the kernel as it is against one binary for every
#                   segment count (scripts/ab_specialize.py): compiles on first use, rates
#   STAGE=segments  one GPU, ~2 min: the window kernel (issue 6) checked
#                   at head dims 64-128, then timed against the main kernel's window
#                   configs, varlen_attn and the memory floor (scripts/ab_windows.py)
#   STAGE=tests     every GPU test
# Optuna is not on the device image: run ../shared/device/fetch-wheels.sh here first, carry
# .whl, and this script installs it. Studies live in results/gpu (name it in carry to resume
# on a fresh machine); at the end of a call its logs are copied to $OUT, and all of it
# packed into $OUT/gpu-results.tgz.
set -uo pipefail
OUT=${OUT:-results}; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
DB=results/gpu; mkdir -p "$DB"
# (only 8 files come back from a call: the logs, and everything in one archive)
trap 'tar czf "$OUT/gpu-results.tgz" -C "$DB" . 2>/dev/null; cp "$DB"/*.log "$OUT"/ 2>/dev/null' EXIT
# Each step has its own time limit, so a slow one leaves time (and $OUT) for the rest.
step() { local limit=$1; shift; echo "== $* (limit ${limit}s)"; local t0=$SECONDS
         timeout "$limit" "$@"; echo "== rc=$? in $((SECONDS - t0)) s"; }
# The tuner on the qwen2.5-vl preset: tune_run NAME LIMIT [ARGS...] -> $DB/NAME.db, NAME.log
# (the log's first and last lines: the epoch the run started and ended, to line the study's
# trial and crown times up with the run's)
# TREE=DIR runs the vitune of another checkout (e.g. `git archive <commit>` of a baseline).
ROOT=$PWD
tune_run() { local name=$1 limit=$2; shift 2
  echo "started $(date +%s.%N)" > "$DB/$name.log"
  (cd "${TREE:-.}" && step "$limit" python3 -m vitune.cli -v tune --gpu auto \
    --preset qwen2.5-vl --out "/tmp/vt/$name" "$@" --storage "sqlite:///$ROOT/$DB/$name.db") \
    >> "$DB/$name.log" 2>&1  # (--out: never the per-user folder later runs would read)
  echo "ended $(date +%s.%N)" >> "$DB/$name.log"; tail -10 "$DB/$name.log"; }
lengths_bench() {  # with the tuned files in $1
  VITUNE_CONFIG_DIR=$1 step 150 python3 -m vitune.cli bench --preset lengths \
    --out "$DB/bench-lengths.jsonl" > "$DB/bench.log" 2>&1; tail -30 "$DB/bench.log"; }
gpu_lane() { step "$1" python3 -m pytest -q -m gpu -n "${JOBS:-14}" -p no:cacheprovider \
    "${@:2}" > "$DB/gpu_tests.log" 2>&1
  grep -E "^FAILED|passed|failed" "$DB/gpu_tests.log" | tail -8; }
case "${STAGE:-tests}" in
  spread)  # one config's rate across fresh workers: do_bench events vs CUDA graphs
    step 240 python3 scripts/timing_spread.py --processes 4 --repeats 3 \
      > "$DB/timing-spread.log" 2>&1
    step 80 python3 scripts/timing_spread.py --processes 2 --repeats 2 --bucket L5476 \
      --configs m64n64w4s2-split-heads-tma,m128n64w8s4-split-heads-tma \
      >> "$DB/timing-spread.log" 2>&1
    grep -v "^==" "$DB/timing-spread.log" ;;
  timer)  # the timer's GPU test, then one config's rate across fresh workers under it
    gpu_lane 60 tests/test_measure.py
    step 150 python3 scripts/timing_spread.py --processes 4 --repeats 3 --timer events \
      > "$DB/timer-spread.log" 2>&1; grep -v "^==" "$DB/timer-spread.log" ;;
  sweep1)  # one GPU: the window bucket's sweep (or BUCKETS=a,b,c) against a search of the
    # same kind of card
    search_db=${SEARCH_DB:-results/h100-2026-11-27-s6/tune-qwen.db.gz}
    if [[ $search_db == *.gz ]]; then  # (committed studies are gzipped)
      gunzip -c "$search_db" > /tmp/search.db; search_db=/tmp/search.db; fi
    sweep_s=${SWEEP_S:-400}  # (530 window configs: ~2-3 min since there are no rounds)
    step $((sweep_s + 20)) timeout -s INT -k 30 "$sweep_s" python3 -m vitune.cli tune \
      --gpu auto --preset qwen2.5-vl --sampler grid --trials 100000 --workers 1 \
      --buckets "${BUCKETS:-d80-bfloat16-window-L64}" --out /tmp/vt/grid \
      --storage "sqlite:///$PWD/$DB/grid.db" > "$DB/grid.log" 2>&1; tail -8 "$DB/grid.log"
    cp /tmp/vt/grid/*.yaml "$DB/" 2>/dev/null  # (the sweep's crowned configs)
    winners=${SEARCH_YAML:+--winners $SEARCH_YAML}  # (for a search run older than eleventh)
    { python3 scripts/compare_search.py "sqlite:///$PWD/$DB/grid.db" \
        "sqlite:///$(realpath "$search_db")" $winners
      step 120 python3 scripts/retime_bests.py "sqlite:///$PWD/$DB/grid.db" \
        "sqlite:///$(realpath "$search_db")" $winners; } 2>&1 | tee "$DB/compare.log" ;;
  duo)  # one GPU, then two, on the same preset: the speed-up of one study on two GPUs
    [ "${PROBE:-1}" = 1 ] && step 120 python3 scripts/startup_probe.py 2>&1 \
      | tee "$DB/startup.log"
    # (ORDER=21: two GPUs first, against any effect of going second)
    one() { TRITON_CACHE_DIR=/tmp/triton-tpe1 tune_run tpe1 330 --workers 1 \
              --out "$DB/configs"; cp "$DB/configs/"*.yaml "$DB/" 2>/dev/null; }
    two() { TRITON_CACHE_DIR=/tmp/triton-tpe2 tune_run tpe2 200 --workers gpus \
              --out /tmp/vt/tpe2; }
    if [ "${ORDER:-12}" = 21 ]; then two; one; else one; two; fi ;;
  startup)  # one GPU, ~2 min: where a run's first seconds go, process by process
    # (scripts/startup_probe.py). PROBES: "none" (the tuner's compile processes, without
    # a GPU) or "cuda" (theirs before the thirteenth session) each
    for on in ${PROBES:-none cuda none cuda}; do
      step 60 python3 scripts/startup_probe.py --compile-on "$on"
    done 2>&1 | tee -a "$DB/startup.log"
    ;;
  two1)  # one GPU, ~1-2 min: two search processes on it (scripts/two_searches_one_gpu.py),
    # the run's board, member process and crowns on a GPU; a check, not a speed (both
    # time on one GPU). TRIALS per bucket (40).
    echo "started $(date +%s.%N)" > "$DB/two1.log"
    step 200 python3 scripts/two_searches_one_gpu.py -v tune --gpu auto --preset qwen2.5-vl \
      --workers 2 --trials "${TRIALS:-40}" --out /tmp/vt/two1 \
      --storage "sqlite:///$PWD/$DB/two1.db" >> "$DB/two1.log" 2>&1
    echo "ended $(date +%s.%N)" >> "$DB/two1.log"
    grep -E "search process|searched in|crowned|closed|Error|error" "$DB/two1.log" | cut -c1-200
    tail -9 "$DB/two1.log"; cp /tmp/vt/two1/*.yaml "$DB/two1-h100.yaml" 2>/dev/null ;;
  duo4)  # on one 2-GPU machine: 1 then 2 GPUs, then 2 then 1 (~9 min): a ratio with a
    # spread, both orders, warm file caches for all runs. RUNS: name:workers[:compile
    # jobs per search process[:share[:tree]]] each, e.g. tpe2s:gpus::all for both GPUs on
    # every bucket's study together, base:1:::ab-base for a baseline's checkout (two calls
    # of a 10-minute limit: split the list). LANE=0: without the GPU tests first.
    python3 -c "import vitune.cli"
    [ "${LANE:-1}" = 1 ] && gpu_lane 150 tests/test_search_loop.py tests/test_isolation.py \
      tests/test_compile_only.py
    runs=${RUNS:-tpe1a:1 tpe2a:gpus tpe2b:gpus tpe1b:1}
    for run in $runs; do
      IFS=: read -r name workers jobs share tree <<< "$run"
      TREE=$tree TRITON_CACHE_DIR=/tmp/triton-$name tune_run "$name" 250 \
        --workers "$workers" --out "/tmp/vt/$name" ${jobs:+--compile-jobs "$jobs"} \
        ${share:+--share "$share"}
      for f in /tmp/vt/"$name"/*.yaml; do cp "$f" "$DB/$name-${f##*/}"; done
    done
    for run in $runs; do
      name=${run%%:*}
      echo "$run $(awk 'NR==1 {s=$2} /^ended/ {e=$2} END {printf "%.1f s", e - s}' \
        "$DB/$name.log")"
    done ;;
  duosweep)  # the window bucket's sweep, the searches against it, the tuned lengths bench
    # (SIGINT at its limit: the tuner closes its worker processes; a SIGTERM'd run of an
    # older version left them timing on the GPUs and spoiled the re-timing after it)
    step 340 timeout -s INT -k 30 320 python3 -m vitune.cli tune --gpu auto \
      --preset qwen2.5-vl --sampler grid --trials 100000 --workers gpus \
      --buckets d80-bfloat16-window-L64 --out /tmp/vt/grid \
      --storage "sqlite:///$PWD/$DB/grid.db" > "$DB/grid.log" 2>&1; tail -4 "$DB/grid.log"
    for n in 1 2; do
      python3 scripts/compare_search.py "sqlite:///$PWD/$DB/grid.db" "sqlite:///$PWD/$DB/tpe$n.db"
      step 40 python3 scripts/retime_bests.py "sqlite:///$PWD/$DB/grid.db" \
        "sqlite:///$PWD/$DB/tpe$n.db"
    done 2>&1 | tee "$DB/compare.log"
    lengths_bench "$PWD/$DB/configs" ;;
  retune)  # the qwen2.5-vl tune (ship its <gpu>.yaml; the 10-minute target)
    tune_run tpe 330 --out "$DB/configs"; cp "$DB/configs/"*.yaml "$DB/" 2>/dev/null ;;
  benches)  # the built-in default against the peers, then the lengths bench, tuned files
    wl="16x1024 d64,4x4096 d64,4x4096 d72,1x16384 d72,4x4096 d80,1x16384 d80,4x4096 d88"
    wl="$wl,1x16384 d88,4x4096 d128,1x16384 d128"
    step 100 python3 -m vitune.cli bench --preset lengths --workloads "$wl" \
      --backends vitune-default,sdpa-cudnn,sdpa-flash,varlen_attn \
      --out "$DB/bench-default.jsonl" > "$DB/bench-default.log" 2>&1
    tail -14 "$DB/bench-default.log"
    lengths_bench "$PWD/$DB/configs" ;;
  heads)  # tune head dims 64/72/80/88/128 (window and full) into a copy of the shipped file
    mkdir -p "$DB/configs"; cp -n vitune/configs/*.yaml "$DB/configs/" 2>/dev/null
    step 560 python3 -m vitune.cli tune --gpu auto --preset heads \
      --out "$DB/configs" --storage "sqlite:///$PWD/$DB/heads.db" > "$DB/heads.log" 2>&1
    tail -16 "$DB/heads.log"; cp "$DB/configs/"*.yaml "$DB/" 2>/dev/null ;;
  check)  # every GPU test, then the selector's overhead (runs differ by a few us), encoder
    gpu_lane 380 tests/test_kernel_gpu.py tests/test_compile.py
    for i in 1 2 3; do
      step 40 python3 -m vitune.cli bench --overhead --out "$DB/overhead-$i.jsonl"; done
    step 100 python3 -m vitune.cli bench --encoder qwen2.5-vl --out "$DB/encoder.jsonl" ;;
  kernel)  # a new kernel choice: is it faster, is every valid config right, and at 72/88?
    step 140 python3 scripts/ab_configs.py --field "${FIELD:-tma}" --head-dims 80,128,72 \
      > "$DB/ab.log" 2>&1; tail -8 "$DB/ab.log"
    gpu_lane 300 tests/test_kernel_gpu.py
    step 130 python3 scripts/probe_rules.py --jobs 14 --warps 4,8 > "$DB/probe.log" 2>&1
    grep -c "^ok" "$DB/probe.log"; grep "^BAD" "$DB/probe.log" | head -12 ;;
  probe)  # split head_dim 72/88 configs the split-on-wgmma rule rejects (4 and 8 warps)
    step 400 python3 scripts/probe_rules.py --jobs 12 --warps 4,8 > "$DB/probe.log" 2>&1
    grep -c "^ok" "$DB/probe.log"; grep "^BAD" "$DB/probe.log" | head -20 ;;
  probebase)  # split configs on wgmma with misaligned bases (rules otherwise applied)
    step 500 python3 scripts/probe_rules.py --jobs 14 --warps 4,8 --head-dims 80,72 \
      --base-offset 4 > "$DB/probe-base.log" 2>&1
    grep -c "^ok" "$DB/probe-base.log"; grep "^BAD" "$DB/probe-base.log" | head -20 ;;
  specialize)  # does do_not_specialize on the count arguments cost speed or save compiles?
    step 400 python3 scripts/ab_specialize.py > "$DB/ab-specialize.log" 2>&1
    cat "$DB/ab-specialize.log" ;;
  segments)  # issue 6: the window kernel against the tile kernel's window winners
    gpu_lane 200 tests/test_windows.py
    step 300 python3 scripts/ab_windows.py --head-dims 80,64,128,72 > "$DB/ab-windows.log" 2>&1
    cat "$DB/ab-windows.log" ;;
  tests) gpu_lane 560 tests/ ;;
  *) echo "unknown STAGE=$STAGE"; exit 2 ;;
esac
