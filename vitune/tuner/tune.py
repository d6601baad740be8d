"""`vitune tune`: tune every bucket of a preset on one GPU and merge the winners into
<out>/<gpu>.yaml after each bucket, so an interrupted run keeps what it measured."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from vitune.kernels.vision_attn.space import KernelConfig
from vitune.runtime.gpu import GpuIdentity
from vitune.runtime.schema import (
    SCHEMA_VERSION,
    bucket_config,
    load_config_file,
    merge_buckets,
    write_config_file,
)
from vitune.tuner.compile_pool import CompilePool, default_compile_jobs
from vitune.tuner.environment import environment
from vitune.tuner.isolation import IsolatedWorker
from vitune.tuner.loop import SearchPlan, search
from vitune.tuner.search import (
    BucketResult,
    TuneOptions,
    bucket_entry,
    crown_bucket,
    kernel_hash,
    plan_bucket,
)
from vitune.tuner.team import SearchTeam
from vitune.tuner.trial import WARM_UP
from vitune.tuner.workloads import Workload

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
    """Merge these buckets into the file at `path` (others kept), atomically."""
    old = load_config_file(path) if path.exists() else {}
    if old and old.get("interpreter", False) != gpu.is_interpreter:
        raise ValueError(f"{path} holds {'interpreter' if old['interpreter'] else 'GPU'} "
                         "results; write interpreter and GPU runs to different files")
    env = environment(None) if gpu.is_interpreter else environment(_cuda_device())
    provenance = {k: v for k, v in env.items() if v is not None}
    provenance["kernel_hash"] = kernel_hash()
    new = [bucket_entry(r) for r in results if r.config is not None]
    doc = {"schema_version": SCHEMA_VERSION, "gpu": gpu.key,
           "interpreter": gpu.is_interpreter, "provenance": provenance,
           "buckets": merge_buckets(old.get("buckets", []), new)}
    write_config_file(path, doc)


def _cuda_device():
    import torch

    return torch.device("cuda", torch.cuda.current_device())


def worker_envs(gpu: GpuIdentity, workers: int) -> list[dict[str, str]]:
    """Environment of each search process's trial worker: one GPU each, or the interpreter."""
    if gpu.is_interpreter:
        return [{"TRITON_INTERPRET": "1"} for _ in range(workers)]
    if workers == 1:
        return [{}]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = visible.split(",") if visible else [str(i) for i in range(workers)]
    if len(devices) < workers:
        raise ValueError(f"--workers {workers} needs {workers} GPUs, {len(devices)} visible")
    return [{"CUDA_VISIBLE_DEVICES": devices[i]} for i in range(workers)]


def tune(workloads: list[Workload], gpu: GpuIdentity, out_dir: str | Path, opts: TuneOptions,
         on_bucket_start: Callable[[Workload], Callable] | None = None,
         workers: int = 1) -> list[BucketResult]:
    """Tune each workload's bucket with `workers` search processes sharing its study; the
    YAML is rewritten after every bucket. On Ctrl-C the buckets crowned so far are saved
    and KeyboardInterrupt propagates (the studies keep every trial: a rerun resumes)."""
    path = output_path(out_dir, gpu)
    opts.known_winners = opts.known_winners or known_winners(out_dir)
    main_env, *helper_envs = worker_envs(gpu, workers)
    jobs = 0 if gpu.is_interpreter else opts.compile_jobs
    jobs = default_compile_jobs(workers) if jobs is None else jobs
    results: list[BucketResult] = []
    with contextlib.ExitStack() as stack:
        # Started once for the whole run, all at once: workers, compile pools and extra
        # search processes stay warm from bucket to bucket.
        team = stack.enter_context(SearchTeam(helper_envs, jobs, opts.trial_timeout_s)) \
            if helper_envs else None
        worker = stack.enter_context(IsolatedWorker("vitune.tuner.trial:run_trial", main_env,
                                                    WARM_UP))
        worker.start()
        compiler = stack.enter_context(CompilePool(jobs, main_env, opts.trial_timeout_s)) \
            if jobs else None
        stack.callback(worker.stop)  # (first: it goes while the compile processes do)
        searched: list[tuple[SearchPlan, KernelConfig]] = []  # by this process, not crowned

        def crown_finished(wait: bool = False) -> None:
            """Crown (re-time, measure the peers) each bucket searched here, in order, once
            the team has finished it too; on this GPU, between this process's trials of
            the next bucket, so no GPU waits for another at the end of a bucket."""
            while searched and (team is None or team.finished(searched[0][0], wait)):
                result = crown_bucket(*searched.pop(0), worker, compiler)
                results.append(result)
                save_results(path, gpu, [result])

        log.info("trial worker and %d compile processes starting (%d more search processes)",
                 jobs, len(helper_envs))
        # Every bucket planned (its study created) and handed to the team at once: a member
        # done with its share of a bucket goes on to the next without waiting for this
        # process to finish its last round there (2-3 s a bucket on two H200s).
        planning = time.perf_counter()
        plans = [(replace(plan, searchers=workers), default)
                 for plan, default in (plan_bucket(w, gpu, opts) for w in workloads)]
        log.info("%d studies planned in %.1f s", len(plans), time.perf_counter() - planning)
        if team is not None:
            for plan, _ in plans:
                team.start(plan)
            team.release()
        for w, (plan, default) in zip(workloads, plans, strict=True):
            started = time.perf_counter()
            search(plan, worker, seed_offset=0, compiler=compiler,
                   on_trial=on_bucket_start(w) if on_bucket_start else None,
                   between_trials=crown_finished)
            searched.append((plan, default))
            log.info("%s searched in %.1f s", plan.study_name, time.perf_counter() - started)
        crown_finished(wait=True)
        closing = time.perf_counter()
    log.info("workers and search processes closed in %.1f s", time.perf_counter() - closing)
    return results
