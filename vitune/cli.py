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
CROSS_GPU_BACKENDS = ("vitune-tuned", "sdpa-cudnn")  # `vitune plot`'s cross-GPU charts


def write_jsonl(rows: list[dict], path: Path) -> None:
    """Atomic: the file is either the old one or the complete new one."""
    write_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))


def _pick_workloads(args: argparse.Namespace):
    from vitune.bench.workloads import PRESETS

    workloads = list(PRESETS[args.preset])
    if args.workloads is not None:
        wanted = _names(args.workloads, "--workloads")
        known = {w.name: w for w in workloads}
        missing = [n for n in wanted if n not in known]
        if missing:
            _fail(f"unknown workload(s) {missing}; preset {args.preset!r} has "
                  f"{sorted(known)}")
        workloads = [known[n] for n in wanted]
    return workloads


def _names(text: str, option: str) -> list[str]:
    """A comma-separated list of names; exit 2 where it names none."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        _fail(f"{option} names nothing (give comma-separated names)")
    return names


def _check_out_file(path: str, option: str = "--out") -> Path:
    """A file that results can be written to (its folder created): exit 2 before any
    measurement where it cannot be."""
    import tempfile

    out = Path(path)
    if out.is_dir():
        _fail(f"{option} {out} is a folder; give a file name")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=".vitune-write-check."):
            pass
    except OSError as exc:
        _fail(f"{option} {out} cannot be written: {exc.strerror or exc}")
    return out


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

    sizes = DEFAULT_IMAGES
    if args.images is not None:
        try:
            sizes = [tuple(int(x) for x in s.lower().split("x"))
                     for s in _names(args.images, "--images")]
            if any(len(s) != 2 or min(s) <= 0 for s in sizes):
                raise ValueError
        except ValueError:
            _fail(f"--images takes HEIGHTxWIDTH,... (e.g. 1080x1920,448x448), got {args.images!r}")
    paths = list(PATHS) if args.backends == "all" else _names(args.backends, "--backends")
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        _fail(f"--backends with --encoder names paths of {list(PATHS)}; unknown: {unknown}")
    _check_out_file(args.out)
    device = _cuda_device()
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

    _check_out_file(args.out)
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
    from vitune.bench.kernels import iter_bench, row_label

    backends = list(BACKENDS) if args.backends == "all" else _names(args.backends,
                                                                      "--backends")
    unknown = [b for b in backends if b not in BACKENDS]  # kernel benchmark
    if unknown:
        _fail(f"unknown backend(s) {unknown}; known: {list(BACKENDS)}")
    workloads = _pick_workloads(args)
    out = _check_out_file(args.out)
    rows = []
    choices = {"off": (False,), "on": (True,), "both": (False, True)}
    for row in iter_bench(workloads, backends, _cuda_device(), choices[args.rotary],
                          choices[args.given_out], args.rounds):
        rows.append(row)
        write_jsonl(rows, out)  # what was measured survives a crash or Ctrl-C
    labelled = [{**r, "backend": row_label(r)} for r in rows]
    _print_table(labelled, list(dict.fromkeys(r["backend"] for r in labelled)),
                 pivot="backend")
    print(f"wrote {len(rows)} rows to {args.out}")
    return _measured_any(rows)


def _measured_any(rows: list[dict]) -> int:
    """Status 1 (failed work) where no row was measured."""
    if any(r.get("status") == "ok" for r in rows):
        return 0
    print("vitune: nothing was measured (every row failed or does not apply)", file=sys.stderr)
    return 1


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

    workloads = _pick_workloads(args)
    out = _check_out_file(args.out)
    rows = sweep_configs(workloads, _cuda_device(), rep_ms=args.rep_ms)
    write_jsonl(rows, out)
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
    return _measured_any(rows)


def _target_gpu(asked: str, interpret: bool):
    """The GPU to tune for, or exit 2 with one sentence when it is not the one present.
    `auto` on a machine without a CUDA GPU is the Triton interpreter (one line says so)."""
    from vitune.runtime.gpu import INTERPRETER_KEY, detect_gpu, interpreter_identity

    if interpret or asked == INTERPRETER_KEY:
        if asked not in ("auto", INTERPRETER_KEY):
            _fail(f"--interpret tunes the Triton interpreter on the CPU, not {asked}; "
                  "drop --gpu or --interpret")
        return interpreter_identity()
    found = detect_gpu()
    if found is None and asked == "auto":
        print("vitune: no CUDA GPU here: tuning the Triton interpreter on the CPU instead "
              "(as --interpret does; tiny preset unless one is named): CPU timings, for trying "
              "the pipeline", file=sys.stderr)
        return interpreter_identity()
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
    from vitune.kernels.vision_attn.space import HEAD_DIMS
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
        if bad := [d for d in args.head_dim if d not in HEAD_DIMS]:
            _fail(f"--head-dim {bad[0]} is not a multiple of 8 in [{HEAD_DIMS[0]}, "
                  f"{HEAD_DIMS[-1]}]")
        workloads = custom_workloads(args.head_dim, args.dtype or "bfloat16", args.seqlens)
    else:
        preset = args.preset or ("tiny" if gpu.is_interpreter else "qwen2.5-vl")
        workloads = TUNE_PRESETS[preset]
        if args.dtype:  # (the preset's shapes in another dtype)
            workloads = [dataclasses.replace(w, dtype=args.dtype) for w in workloads]
    if args.rotary:  # the calls transformers' Qwen-VL towers make: rotary fused
        workloads = [dataclasses.replace(w, rotary=True) for w in workloads]
    if args.buckets is not None:
        known = {bucket_of(w).key: w for w in workloads}
        wanted = _names(args.buckets, "--buckets")
        if unknown := [key for key in wanted if key not in known]:
            _fail(f"--buckets: {', '.join(unknown)} not among this run's buckets "
                  f"({', '.join(known)})")
        workloads = [known[key] for key in wanted]
    if gpu.is_interpreter and any(w.dtype == "bfloat16" for w in workloads):
        _fail("the interpreter computes bf16 matrix products wrongly; use --dtype float16")
    workers = _worker_count(args.workers, gpu)
    out = Path(args.out) if args.out else user_config_dir()
    try:
        check_output(out, gpu)
    except ValueError as exc:
        _fail(str(exc))
    storage = args.storage or f"sqlite:///{(out / 'studies.db').resolve()}"
    if storage.startswith("sqlite:///") and not (
            folder := Path(storage.removeprefix("sqlite:///")).parent).is_dir():
        _fail(f"--storage {storage} cannot be opened: {folder}: No such file or directory "
              "(the SQLite file's folder)")
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
    """The schema (version 1 or 2), then the kernel rules of the file's GPU architecture:
    one line per fault, status 1 if any; status 2 where a path names nothing."""
    from vitune.runtime.schema import ConfigFileError, read_config_document, rule_faults

    if missing := [p for p in args.files if not Path(p).exists()]:
        for path in missing:
            print(f"vitune: {path}: no such file", file=sys.stderr)
        sys.exit(2)
    status = 0
    for path in args.files:
        try:
            doc = read_config_document(path)
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
        print(f"{path}: ok ({doc['gpu']}, {len(doc.get('buckets', []))} buckets, schema "
              f"version {doc['schema_version']})")
    return status


def cmd_show(args: argparse.Namespace) -> int:
    """What the selector would pick for each bucket of a preset, and why."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from vitune.bench.presets import TUNE_PRESETS, bucket_of
    from vitune.kernels.vision_attn.space import fit_to_rotary
    from vitune.runtime.gpu import detect_gpu, identity_for_key, interpreter_identity
    from vitune.runtime.selector import choose

    try:
        gpu = identity_for_key(args.gpu) if args.gpu is not None else detect_gpu()
    except ValueError as exc:
        _fail(str(exc))
    if gpu is None:
        print("vitune: no CUDA GPU here: showing what the Triton interpreter runs (tiny preset "
              "unless one is named); name a GPU with --gpu (e.g. --gpu h100) for its picks",
              file=sys.stderr)
        gpu = interpreter_identity()
    preset = args.preset or ("tiny" if gpu.is_interpreter else "qwen2.5-vl")
    title = f"selector on {gpu.key} ({gpu.arch.name}), preset {preset}"
    table = Table(title=title + (", calls with rotary" if args.rotary else ""))
    for col in ("bucket", "backend", "with out=", "config", "level", "file [bucket]",
                "vitune TFLOP/s", "stale"):
        table.add_column(escape(col))
    stale: dict[str, list[str]] = {}  # why -> the buckets
    picks = [(bucket_of(dataclasses.replace(w, rotary=args.rotary)).key, w,
              choose(gpu, w.head_dim, w.torch_dtype, w.max_seqlen, args.rotary))
             for w in TUNE_PRESETS[preset]]
    labels = _file_labels([c.path for _, _, c in picks if c.path])
    for key, w, c in picks:
        # (with rotary the kernel runs the config fitted to its rotary budget, as the runtime)
        cfg = fit_to_rotary(c.config, w.head_dim, w.torch_dtype, gpu.arch) if args.rotary \
            else c.config
        table.add_row(key, c.backend_for(args.rotary), c.backend_for(args.rotary, True),
                      cfg.short(), c.level,
                      escape(f"{labels[c.path]} [{c.bucket}]") if c.path else "-",
                      f"{c.tflops:.4g}" if c.tflops is not None else "-",
                      "[red]yes[/]" if c.stale else "no" if c.path else "-")
        if c.stale:
            stale.setdefault(f"{c.stale}, in {c.path}", []).append(key)
    Console(width=200).print(table)
    for path, label in labels.items():
        print(f"{label}: {path}")
    for why, keys in stale.items():
        print(f"stale: {', '.join(keys)}: {why}")
    if stale:
        print("(a stale bucket's config still runs, but may no longer be the fastest: "
              "`vitune tune` tunes for this installation)")
    return 0


def _file_labels(paths: list[str]) -> dict[str, str]:
    """A short name per file for a table: its name, or folder/name where names repeat."""
    names = [Path(p).name for p in dict.fromkeys(paths)]
    return {p: Path(p).name if names.count(Path(p).name) == 1
            else f"{Path(p).parent.name}/{Path(p).name}" for p in dict.fromkeys(paths)}


def cmd_plot(args: argparse.Namespace) -> int:
    from vitune.plots import (
        plot_convergence,
        plot_cross_gpu,
        plot_throughput,
        plot_tuned_configs,
        read_rows,
    )

    if Path(args.out).exists() and not Path(args.out).is_dir():
        _fail(f"--out {args.out} is a file, not a folder for the charts")
    written = []
    try:  # (every input mistake: one sentence, status 2)
        if args.results:
            rows = read_rows(args.results)
            if not rows:
                _fail(f"no measured rows (status ok) in {' '.join(args.results)}")
            measured = {r["backend"] for r in rows}
            if args.cross_gpu and (unknown := [b for b in args.cross_gpu
                                               if b not in measured]):
                _fail(f"--cross-gpu {' '.join(unknown)}: not measured in --results (there: "
                      f"{', '.join(sorted(measured))})")
            written += plot_throughput(rows, args.out)
            for backend in args.cross_gpu or CROSS_GPU_BACKENDS:
                if (path := plot_cross_gpu(rows, args.out, backend)) is not None:
                    written.append(path)
        if args.storage:
            written += plot_convergence(args.storage, args.out)
        if args.configs and (path := plot_tuned_configs(args.configs, args.out)):
            written.append(path)
    except ValueError as exc:  # (ConfigFileError too)
        _fail(str(exc))
    except OSError as exc:  # (the charts' folder cannot be written)
        _fail(f"--out {args.out}: cannot write the charts: {exc.strerror or exc}")
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
# against vitune.bench.workloads.PRESETS and vitune.bench.presets.TUNE_PRESETS. The two sets
# share no name: a name from the other set is refused naming the commands that take it.
BENCH_PRESET_NAMES = ("context", "lengths", "rotary")
TUNE_PRESET_NAMES = ("heads", "qwen2.5-vl", "qwen3-vl", "tiny")
DTYPE_NAMES = ("bfloat16", "float16", "float32")


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or "default" in text or action.default is argparse.SUPPRESS:
            return text
        if isinstance(action, argparse._StoreTrueAction):
            return f"{text} (default: off)"
        return text if action.default is None else f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """Usage mistakes in one line with status 2, naming the command and its help."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def _number(kind: type, low: float, what: str):
    """An argparse type: a `kind` number >= low, else one sentence naming what it takes."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value >= low or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    return parse


POSITIVE_INT = _number(int, 1, "a whole number >= 1")
COUNT = _number(int, 0, "a whole number >= 0")
SECONDS = _number(float, 1e-9, "a number of seconds > 0")


def _preset(own: tuple[str, ...], takers: str, other: tuple[str, ...], other_takers: str,
            what: str):
    """An argparse type for --preset: a name of the other set of presets is refused naming
    the commands that take it (argparse's `choices` refuses any other name)."""
    def parse(name: str) -> str:
        if name in other:
            raise argparse.ArgumentTypeError(
                f"{name!r} is a preset of {other_takers}; {takers} take {', '.join(own)} "
                f"({what})")
        return name
    return parse


TUNE_PRESET = _preset(TUNE_PRESET_NAMES, "`vitune tune` and `vitune show`", BENCH_PRESET_NAMES,
                      "`vitune bench` and `vitune sweep`", "shapes to tune")
BENCH_PRESET = _preset(BENCH_PRESET_NAMES, "`vitune bench` and `vitune sweep`",
                       TUNE_PRESET_NAMES, "`vitune tune` and `vitune show`", "shapes to time")


def build_parser() -> argparse.ArgumentParser:
    from vitune import __version__

    parser = _Parser(prog="vitune", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log what the selector and the tuner decide")
    parser.add_argument("--version", action="version", version=f"vitune {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_workload_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--preset", type=BENCH_PRESET, choices=BENCH_PRESET_NAMES,
                       default="context", help="the workloads to time")
        p.add_argument("--workloads", help="comma-separated workload names of the preset "
                                           "(default: all of them)")

    tune = sub.add_parser("tune", help="Optuna search per bucket; writes <out>/<gpu>.yaml",
                          description="Search each bucket's kernel configs on this GPU (on "
                          "a machine without one: the Triton interpreter) and write the "
                          "winners where the runtime reads them.")
    add_tune_args(tune)

    validate = sub.add_parser("validate", help="check configs YAML files against the schema",
                              description="Check configs YAML files (schema version 1 or 2) "
                              "and the kernel rules of their GPU: status 1 if any fails.")
    validate.add_argument("files", nargs="+", metavar="FILE",
                          help="configs YAML files, e.g. ~/.config/vitune/h100.yaml")
    validate.set_defaults(func=cmd_validate)

    show = sub.add_parser("show", help="what the runtime would pick per bucket, and why",
                          description="What the runtime picks for each bucket of a preset, "
                          "from which file, and whether that file's bucket is stale.")
    show.add_argument("--gpu", help="GPU key, e.g. h100, or interpreter (default: the local "
                                    "GPU; the Triton interpreter where there is none)")
    show.add_argument("--preset", type=TUNE_PRESET, choices=TUNE_PRESET_NAMES,
                      help="the buckets to show (default: qwen2.5-vl; tiny for the "
                           "interpreter)")
    show.add_argument("--rotary", action="store_true",
                      help="the picks for calls with the rotary embedding fused (as "
                           "transformers' Qwen-VL towers make them through "
                           "register_hf_attention)")
    show.set_defaults(func=cmd_show)

    plot = sub.add_parser("plot", help="charts from bench results and tuning studies",
                          description="Charts (PNG) from `vitune bench` results, tuning "
                          "studies and tuned configs files.")
    plot.add_argument("--results", nargs="*", default=[], metavar="FILE",
                      help="bench JSON-lines files (default: none)")
    plot.add_argument("--storage", nargs="*", default=[], metavar="URL",
                      help="Optuna storages of tuning studies, e.g. sqlite:///studies.db "
                           "(convergence; several, e.g. a search and an exhaustive sweep, "
                           "share each study's chart) (default: none)")
    plot.add_argument("--cross-gpu", nargs="*", metavar="BACKEND",
                      help="backends to compare across the GPUs found in --results "
                           f"(default: {' '.join(CROSS_GPU_BACKENDS)}, where measured)")
    plot.add_argument("--configs", metavar="DIR",
                      help="folder of tuned <gpu>.yaml files: a cross-GPU chart when it "
                           "holds two or more (default: none)")
    plot.add_argument("--out", default="plots", metavar="DIR", help="folder for the charts")
    plot.set_defaults(func=cmd_plot)

    bench = sub.add_parser("bench", help="every backend on every workload, same run",
                           description="Time every backend on every workload of a preset on "
                           "this GPU, in one run, and write one JSON line per measurement.")
    add_workload_args(bench)
    bench.add_argument("--backends", default="all",
                       help=f"comma-separated, or 'all': {', '.join(BACKENDS)}")
    bench.add_argument("--encoder", choices=("qwen2.5-vl", "qwen3-vl", "qwen2-vl"),
                       help="transformers' own vision tower of this model (published config, "
                            "random weights) per attention path instead of kernels; "
                            "--backends then names transformers-sdpa, varlen+hf-rotary, "
                            "vitune+hf-rotary, vitune (default: kernels)")
    bench.add_argument("--rotary", choices=("off", "on", "both"), default="off",
                       help="q and k rotated first (Qwen-VL rotary: fused in vitune's kernel, "
                            "torch's fp32 rotary before other backends); both: each workload "
                            "with and without")
    bench.add_argument("--given-out", choices=("off", "on", "both"), default="off",
                       help="the result lands in a buffer passed as out= (as serving engines "
                            "call it: vitune's kernel writes it, another backend's result is "
                            "copied into it); both: each workload both ways")
    bench.add_argument("--rounds", type=POSITIVE_INT, default=1,
                       help="times each backend is timed per workload, the backends in turn "
                            "and in another order each round; a row keeps the median (drift "
                            "of the card between timings then reaches every backend alike)")
    bench.add_argument("--overhead", action="store_true",
                       help="host time per call of vision_attention(backend='auto') against "
                            "launching the chosen kernel directly")
    bench.add_argument("--images", help="encoder batch as HEIGHTxWIDTH,... (default: "
                                        "1092x1932, 1036x1036 and two 448x448)")
    bench.add_argument("--reps", type=POSITIVE_INT, default=10,
                       help="encoder forward passes timed per path")
    bench.add_argument("--out", default="results/bench.jsonl", metavar="FILE",
                       help="JSON-lines file of the rows (its folder is created)")
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
                                "blackwell_consumer"), help="the GPU architecture")
    check.add_argument("--head-dim", type=POSITIVE_INT, default=80, help="the head dim")
    check.add_argument("--dtype", default="bfloat16", choices=DTYPE_NAMES,
                       help="the inputs' dtype")
    check.add_argument("--jobs", type=POSITIVE_INT, default=max(1, (os.cpu_count() or 2)),
                       help="compiles at once (default: the CPU cores)")
    check.add_argument("--limit", type=POSITIVE_INT,
                       help="only the first N valid configs (default: all)")
    check.add_argument("--kernel", default="all", choices=("all", "tiles", "windows"),
                       help="the tile kernel's configs, the window kernel's, or both")
    check.set_defaults(func=cmd_compile_check)

    sweep = sub.add_parser("sweep", help="time every valid kernel config on workloads")
    add_workload_args(sweep)
    sweep.add_argument("--rep-ms", type=SECONDS, default=50,
                       help="milliseconds of repetitions timed per config")
    sweep.add_argument("--out", default="results/sweep.jsonl", metavar="FILE",
                       help="JSON-lines file of the rows (its folder is created)")
    sweep.set_defaults(func=cmd_sweep)
    return parser


def add_tune_args(p: argparse.ArgumentParser) -> None:
    from vitune.tuner.samplers import SAMPLERS

    p.add_argument("--gpu", default="auto",
                   help="target GPU key (h100, h200, gb200, b200, ...), interpreter, or auto: "
                        "the local GPU, else the Triton interpreter")
    p.add_argument("--preset", type=TUNE_PRESET, choices=TUNE_PRESET_NAMES,
                   help="workload set (default: qwen2.5-vl; tiny for the interpreter)")
    p.add_argument("--head-dim", type=POSITIVE_INT, nargs="+",
                   help="explicit workloads: head dims (default: the preset's)")
    p.add_argument("--dtype", choices=DTYPE_NAMES,
                   help="the workloads' dtype (default: bfloat16 for --head-dim/--seqlens, "
                        "the preset's own otherwise)")
    p.add_argument("--seqlens", type=POSITIVE_INT, nargs="+",
                   help="explicit workloads: segment lengths (default: the preset's)")
    p.add_argument("--rotary", action="store_true",
                   help="tune with the rotary embedding fused (the calls of transformers' "
                        "Qwen-VL towers through register_hf_attention); its buckets are "
                        "recorded apart (key suffix -rotary)")
    p.add_argument("--buckets", help="comma-separated bucket keys to tune, e.g. "
                   "d80-bfloat16-window-L64 (default: all of the workloads')")
    p.add_argument("--trials", type=POSITIVE_INT,
                   help="trials that run per bucket (default: 24%% of the bucket's valid "
                        "configs, at least 40)")
    p.add_argument("--timeout", type=SECONDS, help="seconds per bucket (default: no limit)")
    p.add_argument("--trial-timeout", type=SECONDS, default=300, help="seconds per trial")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="Optuna's sampler")
    p.add_argument("--compile-jobs", type=COUNT,
                   help="kernels compiled in parallel ahead of timing, per search process "
                        "(default: the CPU cores less two, at most 16; 0: compile in the trial)")
    p.add_argument("--storage", help="Optuna storage: an RDB URL (sqlite:///..., "
                   "postgresql://...) or journal:PATH for a journal file "
                   "(default: sqlite:///<out>/studies.db)")
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
                   help="run the pipeline on the CPU through the Triton interpreter (what "
                        "--gpu auto does where there is no GPU)")
    p.set_defaults(func=cmd_tune)


def tune_main(argv: list[str] | None = None) -> int:
    """The plain `tune` command: `tune --gpu gb200` is `vitune tune --gpu gb200`."""
    return main(["tune", *(sys.argv[1:] if argv is None else argv)])


def _tunes_a_gpu(argv: list[str]) -> bool:
    """`vitune tune ...` on a GPU (not --interpret, not --help), read before parsing."""
    words = [a for a in argv if not a.startswith("-")]
    return bool(words) and words[0] == "tune" and not {"--interpret", "-h", "--help"} & set(argv)


def _nvidia_device_files() -> bool:
    """Whether the NVIDIA driver exposes a device here (no torch import: a machine without
    one tunes the interpreter, whose workers are spawned, so no fork server is wanted)."""
    return any(Path("/dev").glob("nvidia[0-9]*"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if _tunes_a_gpu(argv) and _nvidia_device_files():
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
