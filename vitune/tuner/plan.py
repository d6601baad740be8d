"""Planning a bucket's search: the options of a `vitune tune` run, the plan that every
search process of a bucket works from (its study, sampler, budget and the configs to run
first), and the configs a bucket searches."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import optuna

from vitune.bench.backends import sglang_style_config
from vitune.bench.presets import bucket_of
from vitune.bench.workloads import Workload
from vitune.kernels.arch import ArchSpec
from vitune.kernels.vision_attn.space import (
    KernelConfig,
    check_config,
    default_config,
    valid_configs,
)
from vitune.runtime.gpu import GpuIdentity
from vitune.tuner.samplers import SAMPLERS
from vitune.tuner.studies import open_storage, study_name

log = logging.getLogger(__name__)


@dataclass
class TuneOptions:
    """How `vitune tune` searches every bucket (its command-line options)."""

    # Trials that ran (compiled, checked, timed) per bucket; None: 24% of the bucket's
    # valid configs (at least MIN_TRIALS), within the tuner's goal of a quarter of a sweep.
    trials: int | None = None
    timeout_s: float | None = None  # per bucket
    sampler: str = "tpe"
    storage: str = "sqlite:///vitune-studies.db"
    study_prefix: str | None = None
    trial_timeout_s: float = 300
    seed: int = 0
    rep_ms: float = 100
    known_winners: list[KernelConfig] = field(default_factory=list)
    compile_jobs: int | None = None  # parallel compiles per search process (None: auto)
    share: str = "tail"  # buckets among search processes (vitune.tuner.bucket_board): tail or all


@dataclass(frozen=True)
class SearchPlan:
    """What every search process of one bucket needs (picklable: helpers get a copy)."""

    workload: Workload
    gpu: GpuIdentity
    study_name: str
    sampler: str
    storage: str
    budget: int  # trials that ran, counting those a previous run left
    # seconds a search process gives the bucket from when it starts on it (None: no limit);
    # no new trial starts after that
    timeout_s: float | None
    seed: int
    rep_ms: float
    trial_timeout_s: float
    # time.time() when this run planned the bucket: trials running since then belong to
    # this run's search processes (older ones to a run that was killed); None: not known
    since: float | None = None
    # configs to run before the sampler proposes any (the built-in default, known winners)
    first: tuple[KernelConfig, ...] = ()
    searchers: int = 1  # search processes of this run on the bucket (a Seat says it live)


MIN_TRIALS = 40
AUTO_TRIALS_FRACTION = 0.24


def trial_budget(requested: int | None, n_valid: int) -> int:
    """Trials to run on a bucket with n_valid valid configs."""
    if requested is not None:
        return requested
    return max(MIN_TRIALS, math.ceil(AUTO_TRIALS_FRACTION * n_valid))


def bucket_configs(w: Workload, arch: ArchSpec) -> list[KernelConfig]:
    """The valid configs a bucket searches: the window kernel's only where segments are
    short (it walks a long segment in one program per head: never a winner there)."""
    return [cfg for cfg in valid_configs(w.head_dim, w.torch_dtype, arch,
                                         windows=w.regime == "window")
            if not w.rotary or check_config(cfg, w.head_dim, w.torch_dtype, arch, True) is None]


def bucket_reason(cfg: KernelConfig, w: Workload, arch: ArchSpec) -> str | None:
    """Why a bucket's search leaves `cfg` out (check_config's rules, bucket_configs'
    regime), or None."""
    if cfg.windows and w.regime != "window":
        return "windows: the window kernel is searched in the window regime only"
    return check_config(cfg, w.head_dim, w.torch_dtype, arch, w.rotary)


def plan_bucket(workload: Workload, gpu: GpuIdentity, opts: TuneOptions
                ) -> tuple[SearchPlan, KernelConfig]:
    """Create (or reopen) the bucket's study, list the configs worth trying first (the
    built-in default, the SGLang-style constants, winners of other buckets and GPUs), and
    say how to search it: exhaustively when the valid space is no larger than the budget.
    Also returns the built-in default, which is re-timed beside the winner."""
    if opts.sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {opts.sampler!r}; choose one of {list(SAMPLERS)}")
    bucket = bucket_of(workload)
    dtype = workload.torch_dtype
    name = study_name(opts.study_prefix or gpu.key, bucket.key)
    n_valid = len(bucket_configs(workload, gpu.arch))
    sampler = opts.sampler
    trials = trial_budget(opts.trials, n_valid)
    if sampler != "grid" and n_valid <= trials:
        log.info("%s: %d valid configs <= %d trials: exhaustive", bucket.key, n_valid, trials)
        sampler = "grid"
    study = optuna.create_study(storage=open_storage(opts.storage), study_name=name,
                                direction="maximize", load_if_exists=True)
    study.set_user_attr("workload", workload.name)
    default = default_config(workload.head_dim, dtype, gpu.arch, workload.max_seqlen)
    first = []
    for cfg in [default, sglang_style_config(workload.head_dim), *opts.known_winners]:
        cfg = cfg.canonical(workload.head_dim)
        if bucket_reason(cfg, workload, gpu.arch) is None and cfg not in first:
            first.append(cfg)
    plan = SearchPlan(workload, gpu, name, sampler, opts.storage, trials, opts.timeout_s,
                      opts.seed, opts.rep_ms, opts.trial_timeout_s, since=time.time(),
                      first=tuple(first))
    return plan, default
