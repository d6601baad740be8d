"""Command line: `vitune tune|show|validate|bench|sweep|plot|report ...`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from vitune.logs import LOG_FORMAT
from vitune.runtime.atomic import write_atomic
from vitune.runtime.backend_names import MEASURED_BACKENDS

STARTED = time.perf_counter()  # (-v logs say how long a tuning run took to start)
BACKENDS = MEASURED_BACKENDS  # (what `bench --backends` takes)


def write_jsonl(rows: list[dict], path: Path) -> None:
    """Atomic: the file is either the old one or the complete new one."""
    write_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))


def _pick_workloads(args: argparse.Namespace):
    from vitune.bench.workloads import PRESETS

    workloads = list(PRESETS[args.preset])
    if args.workloads:
        wanted = [name.strip() for name in args.workloads.split(",")]
        known = {w.name: w for w in workloads}
        missing = [n for n in wanted if n not in known]
        if missing:
            _fail(f"unknown workload(s) {missing}; preset {args.preset!r} has "
                  f"{sorted(known)}")
        workloads = [known[n] for n in wanted]
    return workloads


def _cuda_device():
    import torch

    if not torch.cuda.is_available():
        _fail("benchmarks need a CUDA GPU and none was found (on a CPU, `vitune tune "
              "--interpret` runs the tuner's whole pipeline through the Triton interpreter)")
    return torch.device("cuda", torch.cuda.current_device())


def _print_table(rows: list[dict], columns: list[str], pivot: str) -> None:
    """Workloads down, `pivot` values across, useful TFLOP/s in the cells."""
    from rich.console import Console
    from rich.table import Table

    cols = list(dict.fromkeys(r[pivot] for r in rows))
    table = Table(title=f"useful TFLOP/s on {rows[0].get('device_name')} (torch "
                        f"{rows[0]['torch']}, triton {rows[0]['triton']}, {rows[0]['date']})")
    table.add_column("workload")
    for c in cols:
        table.add_column(str(c), justify="right")
    for wl in dict.fromkeys(r["workload"] for r in rows):
        cells = []
        for c in cols:
            r = next((r for r in rows if r["workload"] == wl and r[pivot] == c), None)
            cells.append(f"{r['tflops']:.1f}" if r and r.get("status") == "ok"
                         else (r or {}).get("status", "-"))
        table.add_row(wl, *cells)
    Console(width=200).print(table)


def cmd_encoder_bench(args: argparse.Namespace) -> int:
    import torch

    from vitune.bench.encoder import DEFAULT_IMAGES, PATHS, bench_tower
    from vitune.bench.environment import environment

    device = _cuda_device()
    sizes = DEFAULT_IMAGES
    if args.images:
        try:
            sizes = [tuple(int(x) for x in s.lower().split("x")) for s in args.images.split(",")]
            if any(len(s) != 2 or min(s) <= 0 for s in sizes):
                raise ValueError
        except ValueError:
            _fail(f"--images takes HEIGHTxWIDTH,... (e.g. 1080x1920,448x448), got {args.images!r}")
    paths = list(PATHS) if args.backends == "all" else args.backends.split(",")
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        _fail(f"--backends with --encoder names paths of {list(PATHS)}; unknown: {unknown}")
    try:
        rows = bench_tower(args.encoder, sizes, paths, device, torch.bfloat16, reps=args.reps)
    except ValueError as exc:  # no such tower in the installed transformers
        _fail(str(exc))
    import transformers

    env = {**environment(device), "transformers": transformers.__version__}
    rows = [{**r, **env} for r in rows]
    write_jsonl(rows, Path(args.out))
    first = rows[0]
    print(f"transformers' {args.encoder} vision tower ({first['layers']} layers, random weights, "
          f"bf16), {first['tokens']} patches of {len(sizes)} images; {env['device_name']}, "
          f"torch {env['torch']}, triton {env['triton']}, transformers "
          f"{env['transformers']}, {env['date']}")
    rates = {r["path"]: r["tokens_per_s"] for r in rows if r["status"] == "ok"}
    for r in rows:
        if r["status"] == "n/a":
            print(f"  {r['path']:18s} n/a ({r['reason']})")
            continue
        line = f"  {r['path']:18s} {r['median_ms']:8.1f} ms {r['tokens_per_s']:10,.0f} tokens/s"
        if r["status"] == "ok":
            vs = ", ".join(f"{r['tokens_per_s'] / rate:.2f}x {name}"
                           for name, rate in rates.items() if name != r["path"])
            line += (f"  attention+rotary {r['attention_rotary_ms']:6.1f} ms "
                     f"({r['attention_rotary_share']:.0%})  [{vs}]")
        else:
            line += "  (rotary and attention skipped: the ceiling)"
        print(line)
    return 0


def cmd_overhead_bench(args: argparse.Namespace) -> int:
    from vitune.bench.environment import environment
    from vitune.bench.overhead import host_overhead

    device = _cuda_device()
    env = environment(device)
    rows = [{**r, **env} for r in host_overhead(device)]
    write_jsonl(rows, Path(args.out))
    print(f"host time per call, {rows[0]['tokens']} tokens x {rows[0]['heads']} heads "
          f"d{rows[0]['head_dim']} ({rows[0]['config']}), {env['device_name']}, torch "
          f"{env['torch']}, triton {env['triton']}, {env['date']}")
    for r in rows:
        print(f"  {r['way']:34s} {r['us_per_call']:7.1f} us  ({r['overhead_us']:+.1f} us)")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.encoder:
        return cmd_encoder_bench(args)
    if args.overhead:
        return cmd_overhead_bench(args)
    from vitune.bench.kernels import iter_bench

    backends = list(BACKENDS) if args.backends == "all" else args.backends.split(",")
    unknown = [b for b in backends if b not in BACKENDS]  # kernel benchmark
    if unknown:
        _fail(f"unknown backend(s) {unknown}; known: {list(BACKENDS)}")
    rows = []
    choices = {"off": (False,), "on": (True,), "both": (False, True)}
    for row in iter_bench(_pick_workloads(args), backends, _cuda_device(),
                          choices[args.rotary], choices[args.given_out]):
        rows.append(row)
        write_jsonl(rows, Path(args.out))  # what was measured survives a crash or Ctrl-C
    labelled = [{**r, "backend": r["backend"] + ("+rotary" if r["rotary"] else "")
                 + (" out=" if r["given_out"] else "")} for r in rows]
    _print_table(labelled, list(dict.fromkeys(r["backend"] for r in labelled)),
                 pivot="backend")
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


def cmd_compile_check(args: argparse.Namespace) -> int:
    """Compile every valid config for an architecture, with or without its GPU."""
    import torch

    from vitune.kernels.arch import ARCHS
    from vitune.kernels.vision_attn.aot import compile_space
    from vitune.kernels.vision_attn.space import estimate_smem_bytes

    arch = ARCHS[args.arch]
    dtype = getattr(torch, args.dtype)
    failed, over, instructions, slack = [], [], {}, []
    results = list(compile_space(arch, args.head_dim, dtype, args.jobs, args.limit,
                                 args.kernel))
    for cfg, info in results:
        if isinstance(info, str):
            failed.append((cfg, info))
            continue
        instructions[info.matrix_instructions] = instructions.get(info.matrix_instructions,
                                                                  0) + 1
        if info.shared_bytes > arch.smem_per_block:
            over.append((cfg, info.shared_bytes))
        slack.append(info.shared_bytes / estimate_smem_bytes(cfg, args.head_dim, dtype, arch))
    print(f"{arch.name} (sm_{arch.min_capability[0]}{arch.min_capability[1]}), head_dim "
          f"{args.head_dim}, {args.dtype}, {args.kernel} kernels: {len(results)} valid "
          "configs compiled ahead of "
          f"time, {len(failed)} failed, {len(over)} over the {arch.smem_per_block // 1024} KB "
          f"shared-memory budget; matrix instructions {instructions}; real shared memory / "
          f"estimate at most {max(slack, default=0):.2f}")
    for cfg, reason in failed[:20]:
        print(f"  FAILED {cfg.short()}: {reason}")
    for cfg, used in over[:20]:
        print(f"  OVER   {cfg.short()}: {used // 1024} KB")
    return 1 if failed or over else 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from vitune.bench.sweep import sweep_configs

    rows = sweep_configs(_pick_workloads(args), _cuda_device(), rep_ms=args.rep_ms)
    write_jsonl(rows, Path(args.out))
    for wl in dict.fromkeys(r["workload"] for r in rows):
        ok = sorted((r for r in rows if r["workload"] == wl and r["status"] == "ok"),
                    key=lambda r: -r["tflops"])
        bad = [r for r in rows if r["workload"] == wl and r["status"] != "ok"]
        print(f"{wl}: {len(ok)} ok, {len(bad)} failed")
        for r in ok[:5]:
            print(f"  {r['config']:32s} {r['tflops']:7.1f} TFLOP/s  {r['median_ms'] * 1e3:8.1f} us")
        if ok:
            print(f"  worst: {ok[-1]['config']} {ok[-1]['tflops']:.1f} TFLOP/s")
        for r in bad[:5]:
            print(f"  FAILED {r['config']}: {r['status']} {r.get('error', r.get('rel_error'))}")
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


def _target_gpu(asked: str, interpret: bool):
    """The GPU to tune for, or exit 2 with one sentence when it is not the one present."""
    from vitune.runtime.gpu import detect_gpu, interpreter_identity

    if interpret:
        if asked not in ("auto", "interpreter"):
            _fail(f"--interpret tunes the Triton interpreter on the CPU, not {asked}; "
                  "drop --gpu or --interpret")
        return interpreter_identity()
    found = detect_gpu()
    if found is None:
        _fail(f"asked to tune for {asked} but this machine has no CUDA GPU "
              "(use --interpret to try the pipeline on the CPU)")
    if asked != "auto" and asked != found.key:
        _fail(f"asked to tune for {asked} but this machine has {found.name} ({found.key})")
    return found


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _fail(sentence: str) -> None:
    print(f"vitune: {sentence}", file=sys.stderr)
    sys.exit(2)


def _worker_count(asked: str, gpu) -> int:
    from vitune.tuner.tune import visible_gpus, worker_envs

    if asked == "gpus":
        return 1 if gpu.is_interpreter else len(visible_gpus())
    try:
        count = int(asked)
    except ValueError:
        count = 0
    if count < 1:
        _fail(f"--workers takes a positive number or 'gpus', got {asked!r}")
    try:
        worker_envs(gpu, count)  # (one visible GPU per search process), before any starts
    except ValueError as exc:
        _fail(str(exc))
    return count


def cmd_tune(args: argparse.Namespace) -> int:
    import warnings

    import optuna
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    from vitune.bench.presets import TUNE_PRESETS, bucket_of, custom_workloads
    from vitune.runtime.selector import user_config_dir
    from vitune.tuner.plan import TuneOptions
    from vitune.tuner.studies import check_storage
    from vitune.tuner.tune import check_output, output_path, tune

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    imported = time.perf_counter()
    gpu = _target_gpu(args.gpu, args.interpret)
    logging.getLogger(__name__).info(
        "tuning for %s (%s): imports took %.1f s, finding the GPU %.1f s", gpu.key, gpu.name,
        imported - STARTED, time.perf_counter() - imported)
    if args.head_dim or args.seqlens:
        if not (args.head_dim and args.seqlens):
            _fail("--head-dim and --seqlens go together (with --dtype)")
        workloads = custom_workloads(args.head_dim, args.dtype or "bfloat16", args.seqlens)
    else:
        preset = args.preset or ("tiny" if args.interpret else "qwen2.5-vl")
        workloads = TUNE_PRESETS[preset]
        if args.dtype:  # (the preset's shapes in another dtype)
            workloads = [dataclasses.replace(w, dtype=args.dtype) for w in workloads]
    if args.rotary:  # the calls transformers' Qwen-VL towers make: rotary fused
        workloads = [dataclasses.replace(w, rotary=True) for w in workloads]
    if args.buckets:
        known = {bucket_of(w).key: w for w in workloads}
        wanted = [key.strip() for key in args.buckets.split(",")]
        if unknown := [key for key in wanted if key not in known]:
            _fail(f"--buckets: {', '.join(unknown)} not among this run's buckets "
                  f"({', '.join(known)})")
        workloads = [known[key] for key in wanted]
    if args.interpret and any(w.dtype == "bfloat16" for w in workloads):
        _fail("the interpreter computes bf16 matrix products wrongly; use --dtype float16")
    workers = _worker_count(args.workers, gpu)
    out = Path(args.out) if args.out else user_config_dir()
    try:
        check_output(out, gpu)
    except ValueError as exc:
        _fail(str(exc))
    storage = args.storage or f"sqlite:///{(out / 'studies.db').resolve()}"
    try:
        check_storage(storage)
    except ValueError as exc:
        _fail(str(exc))
    opts = TuneOptions(trials=args.trials, timeout_s=args.timeout, sampler=args.sampler,
                       storage=storage, study_prefix=args.study_name,
                       trial_timeout_s=args.trial_timeout, compile_jobs=args.compile_jobs,
                       share=args.share)
    console = Console()
    label = " (TRITON INTERPRETER: CPU wall times, not a GPU's)" if gpu.is_interpreter else ""
    console.print(f"tuning {len(workloads)} buckets for [bold]{gpu.key}[/] ({gpu.name}){label}")
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("best {task.fields[best]}"), console=console)

    def on_bucket_start(w):
        task = progress.add_task(bucket_of(w).key, total=args.trials or 1, best="-")

        def on_trial(done, total, best):
            progress.update(task, completed=done, total=total,
                            best="-" if best is None else f"{best:.3g} TFLOP/s")
        return on_trial

    # SIGTERM (a job scheduler, `timeout`) stops like Ctrl-C: the worker processes are
    # closed on the way out instead of being left running on the GPUs.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with progress:
            results = tune(list(workloads), gpu, out, opts, on_bucket_start, workers)
    except KeyboardInterrupt:
        console.print(f"interrupted: finished buckets are in {output_path(out, gpu)}, every "
                      f"finished trial in {storage}; run the same command to resume")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    table = Table(title=f"winners on {gpu.key}{label}")
    for col in ("bucket", "winner", "TFLOP/s", "vs default", "vs best peer", "trials ran"):
        table.add_column(col, no_wrap=True)
    for r in results:
        peer = max(r.peers, key=r.peers.get, default=None)
        table.add_row(r.bucket.key, r.config.short() if r.config else "none",
                      f"{r.tflops:.3g}" if r.tflops else "-",
                      f"{r.tflops / r.default_tflops:.2f}x" if r.tflops and r.default_tflops
                      else "-",
                      f"{r.tflops / r.peers[peer]:.2f}x {peer}" if r.tflops and peer else "-",
                      str(r.trials.get("ran", "-")))
    Console(width=max(console.width, 150)).print(table)
    if not any(r.config is not None for r in results):
        print(f"vitune: no bucket found a config that ran and passed its check; nothing "
              f"written (the trials are in {storage})", file=sys.stderr)
        return 1
    console.print(f"wrote {output_path(out, gpu)}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """The schema, then the kernel rules of the file's GPU architecture: one line per fault,
    status 1 if any."""
    from vitune.runtime.schema import ConfigFileError, load_config_file, rule_faults

    status = 0
    for path in args.files:
        try:
            doc = load_config_file(path)
        except ConfigFileError as exc:
            print(f"vitune: {exc}", file=sys.stderr)
            status = 1
            continue
        faults = rule_faults(doc, path)
        for fault in faults:
            print(f"vitune: {fault}", file=sys.stderr)
        if faults:
            status = 1
            continue
        print(f"{path}: ok ({doc['gpu']}, {len(doc.get('buckets', []))} buckets)")
    return status


def cmd_show(args: argparse.Namespace) -> int:
    """What the selector would pick for each bucket of a preset, and why."""
    from rich.console import Console
    from rich.table import Table

    from vitune.bench.presets import TUNE_PRESETS, bucket_of
    from vitune.runtime.gpu import detect_gpu, identity_for_key
    from vitune.runtime.selector import choose

    try:
        gpu = identity_for_key(args.gpu) if args.gpu else detect_gpu()
    except ValueError as exc:
        _fail(str(exc))
    if gpu is None:
        _fail("no CUDA GPU here: name one with --gpu (e.g. --gpu h100)")
    table = Table(title=f"selector on {gpu.key} ({gpu.arch.name})")
    for col in ("bucket", "backend", "config", "level", "source", "vitune TFLOP/s"):
        table.add_column(col)
    for w in TUNE_PRESETS[args.preset]:
        c = choose(gpu, w.head_dim, w.torch_dtype, w.max_seqlen)
        table.add_row(bucket_of(w).key, c.backend, c.config.short(), c.level,
                      f"{c.path} [{c.bucket}]" if c.path else "-",
                      f"{c.tflops:.1f}" if c.tflops is not None else "-")
    Console(width=200).print(table)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from vitune.plots import (
        plot_convergence,
        plot_cross_gpu,
        plot_throughput,
        plot_tuned_configs,
        read_rows,
    )

    written = []
    try:  # (every input mistake: one sentence, status 2)
        if args.results:
            rows = read_rows(args.results)
            if not rows:
                _fail(f"no measured rows in {args.results}")
            written += plot_throughput(rows, args.out)
            for backend in args.cross_gpu:
                if (path := plot_cross_gpu(rows, args.out, backend)) is not None:
                    written.append(path)
        if args.storage:
            written += plot_convergence(args.storage, args.out)
        if args.configs and (path := plot_tuned_configs(args.configs, args.out)):
            written.append(path)
    except ValueError as exc:  # (ConfigFileError too)
        _fail(str(exc))
    if not written:
        _fail("nothing to plot: give --results FILE..., --storage URL... and/or --configs DIR "
              "(with two or more GPU files)")
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from vitune.bench.report import render

    try:
        page = render(args.files)
    except ValueError as exc:
        _fail(str(exc))
    if not args.out:
        print(page, end="")
        return 0
    write_atomic(Path(args.out), page)
    print(f"wrote {args.out}")
    return 0


# The presets' names, so the parser (and --help) imports no torch; a test checks them
# against vitune.bench.workloads.PRESETS and vitune.bench.presets.TUNE_PRESETS.
BENCH_PRESET_NAMES = ("context", "lengths", "rotary")
TUNE_PRESET_NAMES = ("heads", "qwen2.5-vl", "tiny")


def build_parser() -> argparse.ArgumentParser:
    from vitune import __version__

    parser = argparse.ArgumentParser(prog="vitune", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--version", action="version", version=f"vitune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add_workload_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--preset", choices=BENCH_PRESET_NAMES, default="context")
        p.add_argument("--workloads", help="comma-separated workload names of the preset")

    tune = sub.add_parser("tune", help="Optuna search per bucket; writes <out>/<gpu>.yaml")
    add_tune_args(tune)

    validate = sub.add_parser("validate", help="check configs YAML files against the schema")
    validate.add_argument("files", nargs="+")
    validate.set_defaults(func=cmd_validate)

    show = sub.add_parser("show", help="what the runtime would pick per bucket, and why")
    show.add_argument("--gpu", help="GPU key (default: the local GPU)")
    show.add_argument("--preset", default="qwen2.5-vl",
                      choices=("qwen2.5-vl", "heads", "tiny"))
    show.set_defaults(func=cmd_show)

    plot = sub.add_parser("plot", help="charts from bench results and tuning studies")
    plot.add_argument("--results", nargs="*", default=[], help="bench JSONL files")
    plot.add_argument("--storage", nargs="*", default=[],
                      help="Optuna storages of tuning studies (convergence; several, e.g. a "
                           "search and an exhaustive sweep, share each study's chart)")
    plot.add_argument("--cross-gpu", nargs="*", default=["vitune-tuned", "sdpa-cudnn"],
                      help="backends to compare across the GPUs found in --results")
    plot.add_argument("--configs", help="folder of tuned <gpu>.yaml files: a cross-GPU chart "
                                        "when it holds two or more")
    plot.add_argument("--out", default="plots")
    plot.set_defaults(func=cmd_plot)

    bench = sub.add_parser("bench", help="every backend on every workload, same run")
    add_workload_args(bench)
    bench.add_argument("--backends", default="all",
                       help=f"comma-separated, or 'all': {', '.join(BACKENDS)}")
    bench.add_argument("--encoder", choices=("qwen2.5-vl", "qwen3-vl", "qwen2-vl"),
                       help="transformers' own vision tower of this model (published config, "
                            "random weights) per attention path instead of kernels; "
                            "--backends then names transformers-sdpa, varlen+hf-rotary, "
                            "vitune+hf-rotary, vitune")
    bench.add_argument("--rotary", choices=("off", "on", "both"), default="off",
                       help="q and k rotated first (Qwen-VL rotary: fused in vitune's kernel, "
                            "torch's fp32 rotary before other backends); both: each workload "
                            "with and without (default: off)")
    bench.add_argument("--given-out", choices=("off", "on", "both"), default="off",
                       help="the result lands in a buffer passed as out= (as serving engines "
                            "call it: vitune's kernel writes it, another backend's result is "
                            "copied into it); both: each workload both ways (default: off)")
    bench.add_argument("--overhead", action="store_true",
                       help="host time per call of vision_attention(backend='auto') against "
                            "launching the chosen kernel directly")
    bench.add_argument("--images", help="encoder batch as HEIGHTxWIDTH,... (default: "
                                        "1092x1932, 1036x1036 and two 448x448)")
    bench.add_argument("--reps", type=int, default=10)
    bench.add_argument("--out", default="results/bench.jsonl")
    bench.set_defaults(func=cmd_bench)

    report = sub.add_parser("report", help="the benchmarks page (markdown, one table per "
                                           "run) from bench JSONL files")
    report.add_argument("files", nargs="+", help="bench JSONL files, one run of one command "
                                                 "each (data/bench/*/*.jsonl)")
    report.add_argument("--out", help="the page to write, e.g. docs/benchmarks.md (default: "
                                      "print it)")
    report.set_defaults(func=cmd_report)

    check = sub.add_parser("compile-check",
                           help="compile every valid config for an architecture ahead of time "
                                "(no GPU needed): compiler errors, real shared memory")
    check.add_argument("--arch", default="blackwell",
                       choices=("ampere", "ampere_consumer", "hopper", "blackwell",
                                "blackwell_consumer"))
    check.add_argument("--head-dim", type=int, default=80)
    check.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    check.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2)))
    check.add_argument("--limit", type=int, help="only the first N valid configs")
    check.add_argument("--kernel", default="all", choices=("all", "tiles", "windows"),
                       help="the tile kernel's configs, the window kernel's, or both")
    check.set_defaults(func=cmd_compile_check)

    sweep = sub.add_parser("sweep", help="time every valid kernel config on workloads")
    add_workload_args(sweep)
    sweep.add_argument("--rep-ms", type=float, default=50)
    sweep.add_argument("--out", default="results/sweep.jsonl")
    sweep.set_defaults(func=cmd_sweep)
    return parser


def add_tune_args(p: argparse.ArgumentParser) -> None:
    from vitune.tuner.samplers import SAMPLERS

    p.add_argument("--gpu", default="auto",
                   help="target GPU key (h100, h200, gb200, b200, ...) or auto")
    p.add_argument("--preset", choices=TUNE_PRESET_NAMES,
                   help="workload set (default qwen2.5-vl; tiny with --interpret)")
    p.add_argument("--head-dim", type=int, nargs="+", help="explicit workloads: head dims")
    p.add_argument("--dtype", choices=("bfloat16", "float16", "float32"),
                   help="the workloads' dtype (default: bfloat16 for --head-dim/--seqlens, "
                        "the preset's own otherwise)")
    p.add_argument("--seqlens", type=int, nargs="+", help="explicit workloads: segment lengths")
    p.add_argument("--rotary", action="store_true",
                   help="tune with the rotary embedding fused (the calls of transformers' "
                        "Qwen-VL towers through register_hf_attention); its buckets are "
                        "recorded apart (key suffix -rotary)")
    p.add_argument("--buckets", help="comma-separated bucket keys to tune (default: all of "
                   "the workloads'), e.g. d80-bfloat16-window-L64")
    p.add_argument("--trials", type=int,
                   help="trials that run per bucket (default: 24%% of the bucket's valid "
                        "configs, at least 40)")
    p.add_argument("--timeout", type=float, help="seconds per bucket")
    p.add_argument("--trial-timeout", type=float, default=300, help="seconds per trial")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    p.add_argument("--compile-jobs", type=int,
                   help="kernels compiled in parallel ahead of timing, per search process "
                        "(default: the CPU cores less two, at most 16; 0: compile in the trial)")
    p.add_argument("--storage", help="Optuna storage: an RDB URL (sqlite:///..., "
                   "postgresql://...) or journal:PATH for a journal file "
                   "(default sqlite:///<out>/studies.db)")
    p.add_argument("--workers", default="1",
                   help="search processes, sharing the storage: a number, or 'gpus' for one "
                        "per local GPU")
    p.add_argument("--share", choices=("tail", "all"), default="tail",
                   help="how search processes share the buckets: 'tail' (each takes buckets "
                        "of its own while any are left, then joins one still searched) or "
                        "'all' (all search each bucket's study together, in turn)")
    p.add_argument("--study-name", help="study name prefix (default: the GPU key)")
    p.add_argument("--out", help="folder of <gpu>.yaml and the studies (default: the "
                                 "per-user folder the runtime reads, $XDG_CONFIG_HOME/vitune "
                                 "or ~/.config/vitune)")
    p.add_argument("--interpret", action="store_true",
                   help="run the pipeline on the CPU through the Triton interpreter")
    p.set_defaults(func=cmd_tune)


def tune_main(argv: list[str] | None = None) -> int:
    """The plain `tune` command: `tune --gpu gb200` is `vitune tune --gpu gb200`."""
    return main(["tune", *(sys.argv[1:] if argv is None else argv)])


def _tunes_a_gpu(argv: list[str]) -> bool:
    """`vitune tune ...` on a GPU (not --interpret, not --help), read before parsing."""
    words = [a for a in argv if not a.startswith("-")]
    return bool(words) and words[0] == "tune" and not {"--interpret", "-h", "--help"} & set(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if _tunes_a_gpu(argv):
        # Its worker processes' fork server first: its imports (torch, Triton: seconds)
        # then overlap this process's own, which building the parser starts.
        from vitune.tuner.isolation import start_fork_server

        start_fork_server()
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format=LOG_FORMAT)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
