"""The Optuna search: one study per (GPU, bucket, kernel version), trials in a worker
process, every trial kept in the study storage so a killed run resumes where it stopped."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import multiprocessing as mp
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from vitune.kernels.vision_attn import kernel as kernel_module
from vitune.kernels.vision_attn import space as space_module
from vitune.kernels.vision_attn.space import (
    SEARCH_SPACE,
    KernelConfig,
    check_config,
    default_config,
    valid_configs,
)
from vitune.runtime.backends import PEER_BACKENDS
from vitune.runtime.gpu import GpuIdentity
from vitune.tuner.compile_pool import CompilePool, default_compile_jobs
from vitune.tuner.isolation import IsolatedWorker, Outcome
from vitune.tuner.peers import sglang_style_config
from vitune.tuner.presets import Bucket, bucket_of
from vitune.tuner.trial import TrialRequest
from vitune.tuner.workloads import Workload

log = logging.getLogger(__name__)
SAMPLERS = ("tpe", "gp", "cmaes", "random", "grid")
GPU_PEERS = ("sdpa-cudnn", "sdpa-flash", "varlen_attn", "flash_attn", "sglang-style-fixed")
RETIME_TOP = 3
MAX_REJECTED_IN_A_ROW = 200  # a sampler stuck in the invalid part of the space


def kernel_hash() -> str:
    """Changes whenever the kernel or its search space does: trials of an older kernel
    live in another study and never mix with the new one's."""
    digest = hashlib.sha256()
    for module in (kernel_module, space_module):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:12]


@dataclass
class TuneOptions:
    trials: int = 40
    timeout_s: float | None = None  # per bucket
    sampler: str = "tpe"
    storage: str = "sqlite:///vitune-studies.db"
    study_prefix: str | None = None
    trial_timeout_s: float = 300
    seed: int = 0
    rep_ms: float = 100
    known_winners: list[KernelConfig] = field(default_factory=list)
    compile_jobs: int | None = None  # parallel compiles per search process (None: auto)


@dataclass
class BucketResult:
    bucket: Bucket
    workload: Workload
    config: KernelConfig | None
    tflops: float | None
    default_tflops: float | None
    peers: dict[str, float]
    trials: dict[str, int]
    study_name: str


def open_storage(url: str) -> str | optuna.storages.BaseStorage:
    """An Optuna RDB URL as is; `journal:PATH` as a journal file (several processes may
    append to it, no database server needed)."""
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    return url


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler({k: list(v) for k, v in SEARCH_SPACE.items()},
                                           seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    raise ValueError(f"unknown sampler {name!r}; choose one of {list(SAMPLERS)}")


def _distributions() -> dict[str, optuna.distributions.BaseDistribution]:
    return {name: optuna.distributions.CategoricalDistribution(list(choices))
            for name, choices in SEARCH_SPACE.items()}


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
    return study.get_trials(deepcopy=False, states=states)


@dataclass(frozen=True)
class SearchPlan:
    """What every search process of one bucket needs (picklable: helpers get a copy)."""

    workload: Workload
    gpu: GpuIdentity
    study_name: str
    sampler: str
    budget: int  # finished trials the study should hold
    deadline: float | None  # time.time() after which no new trial starts
    opts: TuneOptions


def tune_bucket(workload: Workload, gpu: GpuIdentity, worker: IsolatedWorker,
                opts: TuneOptions,
                on_trial: Callable[[int, int, float | None], None] | None = None,
                helper_envs: tuple[dict[str, str], ...] = ()) -> BucketResult:
    """Search one bucket until its study holds `opts.trials` finished trials (counting the
    ones a previous run left) or `opts.timeout_s` passes; then re-time the best few.
    Each entry of `helper_envs` starts one more search process on the same study (one per
    extra GPU, e.g. {"CUDA_VISIBLE_DEVICES": "1"}); they may overshoot the budget by a trial
    each."""
    bucket = bucket_of(workload)
    dtype = workload.torch_dtype
    study_name = f"{opts.study_prefix or gpu.key}:{bucket.key}:{kernel_hash()}"
    n_valid = sum(1 for _ in valid_configs(workload.head_dim, dtype, gpu.arch))
    sampler_name = opts.sampler
    if sampler_name != "grid" and n_valid <= opts.trials:
        log.info("%s: %d valid configs <= %d trials: exhaustive", bucket.key, n_valid,
                 opts.trials)
        sampler_name = "grid"
    study = optuna.create_study(storage=open_storage(opts.storage), study_name=study_name,
                                direction="maximize", load_if_exists=True)
    study.set_user_attr("workload", workload.name)
    default = default_config(workload.head_dim, dtype, gpu.arch, workload.max_seqlen)
    for cfg in [default, sglang_style_config(workload.head_dim), *opts.known_winners]:
        if check_config(cfg, workload.head_dim, dtype, gpu.arch) is None:
            study.enqueue_trial(cfg.to_dict(), skip_if_exists=True)
    plan = SearchPlan(workload, gpu, study_name, sampler_name,
                      opts.trials if sampler_name != "grid" else min(opts.trials, _grid_size()),
                      None if opts.timeout_s is None else time.time() + opts.timeout_s, opts)
    ctx = mp.get_context("spawn")
    helpers = [ctx.Process(target=_helper_main, args=(plan, env, i + 1))
               for i, env in enumerate(helper_envs)]
    for helper in helpers:
        helper.start()
    try:
        with _compile_pool(plan, {}) as compiler:
            _search(plan, worker, seed_offset=0, on_trial=on_trial, compiler=compiler)
    finally:
        for helper in helpers:
            helper.join()
    study = optuna.load_study(study_name=study_name, storage=open_storage(opts.storage))
    return _crown(study, study_name, workload, bucket, gpu, worker, opts, default)


def _request(workload: Workload, gpu: GpuIdentity, opts: TuneOptions, cfg: KernelConfig | None,
             backend: str = "triton") -> TrialRequest:
    return TrialRequest(workload, backend, cfg.to_dict() if cfg else None, gpu.is_interpreter,
                        opts.rep_ms)


def _measure(worker: IsolatedWorker, workload: Workload, gpu: GpuIdentity, opts: TuneOptions,
             backend: str = "triton", cfg: KernelConfig | None = None) -> Outcome:
    """Check and time one backend (vitune's kernel with `cfg`, or a peer) in the worker."""
    return worker.call(_request(workload, gpu, opts, cfg, backend), opts.trial_timeout_s)


def _helper_main(plan: SearchPlan, env: dict[str, str], index: int) -> None:
    with IsolatedWorker("vitune.tuner.trial:run_trial", env) as worker, \
            _compile_pool(plan, env) as compiler:
        _search(plan, worker, seed_offset=index, on_trial=None, compiler=compiler)


def _compile_pool(plan: SearchPlan, env: dict[str, str]) -> contextlib.AbstractContextManager:
    """Parallel compiles on a GPU (the interpreter compiles nothing)."""
    jobs = plan.opts.compile_jobs
    if plan.gpu.is_interpreter or jobs == 0:
        return contextlib.nullcontext()
    return CompilePool(jobs or default_compile_jobs(), env, plan.opts.trial_timeout_s)


def _measured(study: optuna.Study) -> int:
    """Finished trials that ran (compiled, checked, timed); rule rejections cost nothing and
    do not count against the budget."""
    return sum(not t.user_attrs.get("rejected_by_rules") for t in _finished(study))


def _search(plan: SearchPlan, worker: IsolatedWorker, seed_offset: int,
            on_trial: Callable[[int, int, float | None], None] | None,
            compiler: CompilePool | None = None) -> None:
    """The ask-check-compile-run-tell loop; any number of processes may run it on one
    study. Each round asks up to `compiler.jobs` configs, compiles the valid ones at once,
    then checks and times them one by one on the GPU."""
    w, gpu, opts = plan.workload, plan.gpu, plan.opts
    study = optuna.load_study(study_name=plan.study_name, storage=open_storage(opts.storage),
                              sampler=make_sampler(plan.sampler, opts.seed + seed_offset))
    distributions = _distributions()
    rejected_in_a_row = 0
    while (measured := _measured(study)) < plan.budget and (
            plan.deadline is None or time.time() < plan.deadline):
        batch: list[tuple[optuna.Trial, KernelConfig]] = []
        while len(batch) < min(compiler.jobs if compiler else 1, plan.budget - measured):
            if plan.sampler == "grid" and _grid_exhausted(study):
                break
            if rejected_in_a_row >= MAX_REJECTED_IN_A_ROW:
                log.warning("%s: the sampler proposed %d invalid configs in a row; stopping",
                            plan.study_name, rejected_in_a_row)
                break
            trial = study.ask(distributions)
            trial.set_user_attr("searcher", seed_offset)
            cfg = KernelConfig(**trial.params)
            reason = check_config(cfg, w.head_dim, w.torch_dtype, gpu.arch)
            if reason is None:
                batch.append((trial, cfg))
                rejected_in_a_row = 0
                continue
            rejected_in_a_row += 1
            trial.set_user_attr("rejected_by_rules", True)  # never compiled
            trial.set_user_attr("reason", reason)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        if not batch:
            break
        compiled = compiler.compile([_request(w, gpu, opts, cfg) for _, cfg in batch]) \
            if compiler else [None] * len(batch)
        for (trial, cfg), pre in zip(batch, compiled, strict=True):
            if pre is not None and not pre.ok:
                reason = f"compile: {pre.reason}"
            else:
                if pre is not None:
                    trial.set_user_attr("compile_s", round(pre.value["compile_s"], 2))
                started = time.perf_counter()
                outcome = _measure(worker, w, gpu, opts, cfg=cfg)
                trial.set_user_attr("wall_s", round(time.perf_counter() - started, 2))
                reason = None if outcome.ok else outcome.reason
            if reason is None:
                trial.set_user_attr("median_ms", outcome.value["median_ms"])
                study.tell(trial, outcome.value["tflops"])
            else:
                trial.set_user_attr("reason", reason)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                log.debug("%s %s failed: %s", plan.study_name, cfg.short(), reason)
            if on_trial is not None:
                on_trial(_measured(study), plan.budget, _best_value(study))


def _crown(study: optuna.Study, study_name: str, workload: Workload, bucket: Bucket,
           gpu: GpuIdentity, worker: IsolatedWorker, opts: TuneOptions,
           default: KernelConfig) -> BucketResult:
    """Re-time the top few configs (and the default) back to back and crown the fastest;
    measure the peers in the same worker."""
    trials = study.get_trials(deepcopy=False)
    complete = sorted((t for t in trials if t.state == optuna.trial.TrialState.COMPLETE),
                      key=lambda t: -(t.value or 0.0))
    counts = {"total": len(trials), "complete": len(complete),
              "failed": sum(t.state == optuna.trial.TrialState.FAIL for t in trials)}
    # The built-in default is re-timed in the same batch, so "vs default" is like for like.
    candidates = list(dict.fromkeys([KernelConfig(**t.params) for t in complete[:RETIME_TOP]]
                                    + [default]))
    retimed = {}
    for cfg in candidates:
        if check_config(cfg, workload.head_dim, workload.torch_dtype, gpu.arch) is not None:
            continue
        outcome = _measure(worker, workload, gpu, opts, cfg=cfg)
        if outcome.ok:
            retimed[cfg] = outcome.value["tflops"]
    best_cfg = max(retimed, key=retimed.get) if retimed else None
    best_tflops = retimed.get(best_cfg) if best_cfg else None
    default_tflops = retimed.get(default)
    peers = {}
    if not gpu.is_interpreter:  # the interpreter's wall times say nothing about peers
        for name in GPU_PEERS:
            outcome = _measure(worker, workload, gpu, opts, backend=name)
            if outcome.ok:
                peers[name] = outcome.value["tflops"]
    return BucketResult(bucket, workload, best_cfg, best_tflops, default_tflops, peers,
                        counts, study_name)


def bucket_entry(result: BucketResult) -> dict:
    """The YAML entry of a tuned bucket (see vitune.runtime.schema)."""
    # The fastest measured, among backends the runtime can reproduce for this bucket.
    rates = {"triton": result.tflops or 0.0}
    rates.update({PEER_BACKENDS[name]: rate for name, rate in result.peers.items()
                  if name in PEER_BACKENDS})
    entry = {"head_dim": result.bucket.head_dim, "dtype": result.bucket.dtype,
             "regime": result.bucket.regime, "seqlen": result.bucket.seqlen,
             "backend": max(rates, key=rates.get),
             "config": result.config.to_dict() if result.config else None,
             "tflops": _sig(result.tflops), "default_tflops": _sig(result.default_tflops),
             "peers": {k: _sig(v) for k, v in result.peers.items()},
             "trials": result.trials, "study": result.study_name,
             "date": datetime.date.today().isoformat()}
    return {k: v for k, v in entry.items() if v is not None}


def _sig(x: float | None) -> float | None:
    """Four significant digits: readable YAML, and interpreter rates do not round to 0."""
    return None if x is None else float(f"{x:.4g}")


def _best_value(study: optuna.Study) -> float | None:
    values = [t.value for t in study.get_trials(deepcopy=False)
              if t.state == optuna.trial.TrialState.COMPLETE]
    return max(values) if values else None


def _grid_size() -> int:
    size = 1
    for choices in SEARCH_SPACE.values():
        size *= len(choices)
    return size


def _grid_exhausted(study: optuna.Study) -> bool:
    return len(study.trials) >= _grid_size()
