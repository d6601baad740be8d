"""`vitune tune`: tune every bucket of a preset on one GPU and merge the winners into
<out>/<gpu>.yaml after each bucket, so an interrupted run keeps what it measured."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from vitune.bench.environment import environment
from vitune.bench.workloads import Workload
from vitune.kernels.vision_attn.space import KernelConfig
from vitune.runtime.gpu import GpuIdentity
from vitune.runtime.schema import (
    SCHEMA_VERSION,
    ConfigFileError,
    bucket_config,
    card_provenance,
    load_config_file,
    merge_buckets,
    run_provenance,
    write_config_file,
)
from vitune.tuner.bucket_board import BucketBoard
from vitune.tuner.compile_pool import default_compile_jobs, start_search_workers
from vitune.tuner.crown import BucketResult, bucket_entry, crown_bucket
from vitune.tuner.isolation import process_context
from vitune.tuner.plan import SearchPlan, TuneOptions, plan_bucket
from vitune.tuner.search_loop import search
from vitune.tuner.search_processes import SearchTeam
from vitune.tuner.studies import kernel_hash

log = logging.getLogger(__name__)


def output_path(out_dir: str | Path, gpu: GpuIdentity) -> Path:
    return Path(out_dir) / f"{gpu.key}.yaml"


def known_winners(out_dir: str | Path) -> list:
    """Configs already crowned in any configs YAML of out_dir (other buckets, other GPUs):
    tried first, since good configs transfer."""
    winners = []
    for path in sorted(Path(out_dir).glob("*.yaml")):
        try:
            doc = load_config_file(path)
        except ValueError as exc:
            log.warning("skipping %s", exc)
            continue
        winners += [cfg for b in doc.get("buckets", []) if (cfg := bucket_config(b))]
    return list(dict.fromkeys(winners))


def save_results(path: Path, gpu: GpuIdentity, results: list[BucketResult]) -> None:
    """Merge these buckets into the file at `path` (others kept), atomically and under the
    file's lock, so runs crowning into one file at once lose no bucket. Nothing is written
    where no bucket has a winner."""
    if not any(r.config is not None for r in results):
        return
    env = environment(None) if gpu.is_interpreter else environment(_cuda_device())
    run = {**env, "kernel_hash": kernel_hash()}
    provenance = run_provenance(run)
    new = [bucket_entry(r, provenance) for r in results if r.config is not None]
    with output_lock(path):
        old = _existing(path, gpu)  # (its buckets keep the provenance they were tuned with)
        doc = {"schema_version": SCHEMA_VERSION, "gpu": gpu.key,
               "interpreter": gpu.is_interpreter, "provenance": card_provenance(run),
               "buckets": merge_buckets(old.get("buckets", []), new)}
        write_config_file(path, doc)


@contextlib.contextmanager
def output_lock(path: Path):
    """An exclusive lock on `path`'s lock file (beside it) for a read-merge-write; under
    it, temporary files left by a write that was killed are removed (every writer of the
    file holds the lock, so none is mid-write)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for stale in path.parent.glob(f".{path.name}.*.tmp"):
                stale.unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _existing(path: Path, gpu: GpuIdentity) -> dict:
    """The output file's document ({} where there is none), if this run may merge into it;
    else ValueError in one sentence."""
    if not path.exists():
        return {}
    try:
        old = load_config_file(path)
    except ConfigFileError as exc:
        raise ValueError(f"the output file cannot be merged into: {exc} (move it away, or "
                         "write elsewhere with --out)") from None
    if old.get("interpreter", False) != gpu.is_interpreter:
        raise ValueError(f"{path} holds {'interpreter' if old['interpreter'] else 'GPU'} "
                         "results; write interpreter and GPU runs to different files")
    return old


def check_output(out_dir: str | Path, gpu: GpuIdentity) -> Path:
    """Before any search: the output folder can be written and its <gpu>.yaml (if any)
    merged into; else ValueError in one sentence (a run must not search a whole bucket to
    fail at its first crown)."""
    import tempfile

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".vitune-write-check."):
            pass
    except OSError as exc:
        raise ValueError(f"--out {out} cannot be written: {exc.strerror or exc}") from None
    path = output_path(out, gpu)
    with output_lock(path):
        _existing(path, gpu)
    return path


def _cuda_device():
    import torch

    return torch.device("cuda", torch.cuda.current_device())


def visible_gpus() -> list[str]:
    """The GPUs a run's search processes take, one each: CUDA_VISIBLE_DEVICES's entries,
    else every device."""
    if visible := os.environ.get("CUDA_VISIBLE_DEVICES"):
        return visible.split(",")
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def worker_envs(gpu: GpuIdentity, workers: int) -> list[dict[str, str]]:
    """Environment of each search process's trial worker: one GPU each, or the interpreter."""
    if gpu.is_interpreter:
        return [{"TRITON_INTERPRET": "1"} for _ in range(workers)]
    if workers == 1:
        return [{}]
    devices = visible_gpus()
    if len(devices) < workers:
        raise ValueError(f"--workers {workers} needs {workers} GPUs (one per search process), "
                         f"{len(devices)} visible")
    return [{"CUDA_VISIBLE_DEVICES": devices[i]} for i in range(workers)]


def tune(workloads: list[Workload], gpu: GpuIdentity, out_dir: str | Path, opts: TuneOptions,
         on_bucket_start: Callable[[Workload], Callable] | None = None,
         workers: int = 1) -> list[BucketResult]:
    """Tune each workload's bucket with `workers` search processes, each on a bucket of its
    own while there are buckets nobody has started, then sharing the ones still searched
    (vitune.tuner.bucket_board); this process crowns every bucket and rewrites the YAML after each.
    On Ctrl-C the buckets crowned so far are saved and KeyboardInterrupt propagates (the
    studies keep every trial: a rerun resumes)."""
    from vitune.kernels.triton_compat import note_rules_version

    path = output_path(out_dir, gpu)
    note_rules_version(gpu.arch.name)  # (the interpreter's arch is held to no such rule)
    opts.known_winners = opts.known_winners or known_winners(out_dir)
    main_env, *helper_envs = worker_envs(gpu, workers)
    jobs = 0 if gpu.is_interpreter else opts.compile_jobs
    jobs = default_compile_jobs(workers) if jobs is None else jobs
    board = BucketBoard(len(workloads), workers, process_context(main_env),
                        together=opts.share == "all")
    results: list[BucketResult] = []
    with contextlib.ExitStack() as stack:
        # Started once for the whole run, all at once: workers, compile pools and extra
        # search processes stay warm from bucket to bucket.
        team = stack.enter_context(SearchTeam(helper_envs, board, jobs, gpu.capability,
                                              opts.trial_timeout_s)) if helper_envs else None
        # (the crowns' peers are timed in a worker of their own; the interpreter has none)
        worker, compiler, peer_worker = start_search_workers(
            stack, main_env, jobs, opts.trial_timeout_s, gpu.capability,
            peers=not gpu.is_interpreter)
        log.info("trial worker and %d compile processes starting (%d more search processes)",
                 jobs, len(helper_envs))
        # Each plan goes to the team as soon as it is made (its study created): a member
        # starts on the first bucket while this process plans the others.
        planning = time.perf_counter()
        plans: list[tuple[SearchPlan, KernelConfig]] = []
        for w in workloads:
            plans.append(plan_bucket(w, gpu, opts))
            if team is not None:
                team.send(plans[-1][0])
        log.info("%d studies planned in %.1f s", len(plans), time.perf_counter() - planning)
        bars = [on_bucket_start(w) for w in workloads] if on_bucket_start else []
        crowned: set[int] = set()

        def crown_finished() -> None:
            """Crown (re-time, measure the peers) each bucket every process has finished;
            on this GPU, between this process's trials of another bucket, so no GPU waits
            for another at the end of a bucket."""
            for i, on_trial in enumerate(bars):
                ran, budget, best = board.progress(i)
                if budget and i not in crowned:
                    on_trial(ran, budget, best)
            if team is not None:
                team.check()
            for i, (plan, default) in enumerate(plans):
                if i not in crowned and board.finished(i):
                    crowned.add(i)
                    results.append(crown_bucket(plan, default, worker, compiler,
                                                peer_worker))
                    save_results(path, gpu, [results[-1]])
                    if bars:  # (the count as the study has it: picks report the one before)
                        _, budget, best = board.progress(i)
                        bars[i](results[-1].trials["ran"], budget or plan.budget, best)

        while len(crowned) < len(plans):
            seat = board.claim(0, len(plans))
            if seat is None:  # the last buckets are in other processes' hands
                crown_finished()
                time.sleep(0.05)
                continue
            plan = plans[seat.bucket][0]
            started, finished = time.perf_counter(), False
            try:
                search(plan, worker, seed_offset=0, compiler=compiler,
                       between_trials=crown_finished, seat=seat)
                finished = True
            finally:  # (an error here ends the run: the bucket stays open, unfinished)
                board.leave(0, finished)
            log.info("%s searched in %.1f s", plan.study_name, time.perf_counter() - started)
        closing = time.perf_counter()
    log.info("workers and search processes closed in %.1f s", time.perf_counter() - closing)
    order = {plan.study_name: i for i, (plan, _) in enumerate(plans)}
    return sorted(results, key=lambda r: order[r.study_name])
