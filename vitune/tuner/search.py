"""The Optuna search of `vitune tune`: one study per (GPU, bucket, kernel version), planned
here and searched (vitune.tuner.tune) by this process and one more per extra GPU with the
loop of vitune.tuner.loop; every trial is kept in the study storage, so a killed run
resumes where it stopped. Then the best few are re-timed and crowned, and the peers
measured."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import optuna

from vitune.kernels.vision_attn.identity import kernel_hash
from vitune.kernels.vision_attn.space import (
    KernelConfig,
    check_config,
    default_config,
)
from vitune.runtime.backends import PEER_BACKENDS
from vitune.runtime.gpu import GpuIdentity
from vitune.runtime.schema import bucket_config, bucket_key, load_config_file
from vitune.tuner.isolation import IsolatedWorker
from vitune.tuner.loop import (
    SearchPlan,
    bucket_configs,
    bucket_reason,
    make_sampler,
    open_storage,
    trial_ran,
)
from vitune.tuner.peers import LIBRARY_PEERS, sglang_style_config
from vitune.tuner.pipeline import measure, request
from vitune.tuner.presets import Bucket, bucket_of
from vitune.tuner.samplers import SAMPLERS
from vitune.tuner.workloads import Workload

__all__ = ["SAMPLERS", "BucketResult", "TuneOptions", "bucket_entry", "bucket_studies",
           "crown_bucket", "crowned_configs", "kernel_hash", "make_sampler", "open_storage",
           "plan_bucket", "trial_ran"]
log = logging.getLogger(__name__)
GPU_PEERS = (*LIBRARY_PEERS, "sglang-style-fixed")
RETIME_TOP = 5


@dataclass
class TuneOptions:
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
    share: str = "tail"  # buckets among search processes (vitune.tuner.board): tail or all


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


def bucket_studies(url: str) -> Iterator[tuple[str, optuna.Study]]:
    """Every study of one `vitune tune` run's storage with its bucket key (study names are
    GPU:bucket:kernel hash, as plan_bucket makes them)."""
    storage = open_storage(url, read_only=True)
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        yield summary.study_name.split(":")[1], study


def crowned_configs(url: str, winners_yaml: str | None = None) -> dict[str, KernelConfig]:
    """bucket key -> the config a `vitune tune` run crowned there: from its studies (the
    crown records it) or, for runs older than that, from the configs YAML it wrote."""
    out = {}
    if winners_yaml:
        for entry in load_config_file(winners_yaml).get("buckets", []):
            if cfg := bucket_config(entry):
                key = bucket_key(entry["head_dim"], entry["dtype"], entry["regime"],
                                 entry["seqlen"], entry.get("rotary", False))
                out[key] = cfg
    for bucket, study in bucket_studies(url):
        if winner := study.user_attrs.get("crown", {}).get("winner"):
            out[bucket] = KernelConfig.from_dict(winner)
    return out


MIN_TRIALS = 40
AUTO_TRIALS_FRACTION = 0.24


def trial_budget(requested: int | None, n_valid: int) -> int:
    """Trials to run on a bucket with n_valid valid configs."""
    if requested is not None:
        return requested
    return max(MIN_TRIALS, math.ceil(AUTO_TRIALS_FRACTION * n_valid))


def trial_counts(trials: list[optuna.trial.FrozenTrial]) -> dict[str, int]:
    """A bucket's trial counts for its YAML entry, of finished trials only: one a killed
    process left RUNNING (or WAITING) never ran to the end and counts nowhere."""
    finished = [t for t in trials if t.state.is_finished()]
    ran = [t for t in finished if trial_ran(t)]
    complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in ran)
    return {"total": len(finished), "ran": len(ran), "complete": complete,
            "failed": len(ran) - complete,
            "rejected": sum(bool(t.user_attrs.get("rejected_by_rules")) for t in finished),
            "repeats": sum("repeat_of" in t.user_attrs for t in finished)}


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
    # GPU:bucket:kernel hash (bucket_studies reads the bucket back out of it)
    study_name = f"{opts.study_prefix or gpu.key}:{bucket.key}:{kernel_hash()}"
    n_valid = len(bucket_configs(workload, gpu.arch))
    sampler = opts.sampler
    trials = trial_budget(opts.trials, n_valid)
    if sampler != "grid" and n_valid <= trials:
        log.info("%s: %d valid configs <= %d trials: exhaustive", bucket.key, n_valid, trials)
        sampler = "grid"
    study = optuna.create_study(storage=open_storage(opts.storage), study_name=study_name,
                                direction="maximize", load_if_exists=True)
    study.set_user_attr("workload", workload.name)
    default = default_config(workload.head_dim, dtype, gpu.arch, workload.max_seqlen)
    first = []
    for cfg in [default, sglang_style_config(workload.head_dim), *opts.known_winners]:
        cfg = cfg.canonical(workload.head_dim)
        if bucket_reason(cfg, workload, gpu.arch) is None and cfg not in first:
            first.append(cfg)
    plan = SearchPlan(workload, gpu, study_name, sampler, opts.storage, trials, opts.timeout_s,
                      opts.seed, opts.rep_ms, opts.trial_timeout_s, since=time.time(),
                      first=tuple(first))
    return plan, default


def crown_bucket(plan: SearchPlan, default: KernelConfig, worker: IsolatedWorker,
                 compiler=None, peer_worker: IsolatedWorker | None = None) -> BucketResult:
    """Re-time the bucket's best few beside the built-in default, measure the peers (in
    `peer_worker` where there is one: a worker on the same GPU whose start-up called each
    peer library once)."""
    study = optuna.load_study(study_name=plan.study_name, storage=open_storage(plan.storage))
    return _crown(study, plan, worker, default, compiler, peer_worker)


def band_workloads(workload: Workload) -> list[Workload]:
    """The shapes a bucket's crowned config will serve, the bucket's own last. The runtime
    gives a bucket's config to every length nearer (in log space) to it than to another
    bucket, so for full attention the same tokens are also cut into segments half and
    twice as long. (On an H200 the 2 x 5476 winner ran 384.5 there but 283.5 on 4 x 4096,
    where the built-in default ran 403.2.) Windows are all <= 64 tokens: no band."""
    if workload.regime != "full":
        return [workload]
    band = []
    for length in (workload.max_seqlen // 2, workload.max_seqlen * 2):
        segments = max(1, round(workload.total_tokens / length))
        band.append(replace(workload, name=f"{workload.name} ({segments} x {length})",
                            seqlens=(length,) * segments))
    return [*band, workload]


def _crown(study: optuna.Study, plan: SearchPlan, worker: IsolatedWorker,
           default: KernelConfig, compiler=None, peer_worker: IsolatedWorker | None = None
           ) -> BucketResult:
    """Re-time the top few configs and the default on the bucket's band of shapes, back to
    back, and crown the best geometric mean (a config that fails anywhere never wins);
    measure the peers in `peer_worker`, or else in the same worker. Rates reported are the
    bucket's own shape's.
    With a compile pool, the candidates are first compiled for the band's other shapes at
    once: before the kernel had one binary for every segment count, a new shape could need
    a new binary, and one by one in the timing worker those took most of a crown (12-19 s
    of 2 x H200 crowns; docs/perf-notes.md). Now these are expected to be cache hits: kept
    until a GPU run shows the crown as fast without them."""
    workload, gpu = plan.workload, plan.gpu
    trials = study.get_trials(deepcopy=False)
    ran = [t for t in trials if trial_ran(t)]
    complete = sorted((t for t in ran if t.state == optuna.trial.TrialState.COMPLETE),
                      key=lambda t: -(t.value or 0.0))
    counts = trial_counts(trials)
    # The built-in default is re-timed in the same batch, so "vs default" is like for like.
    top = [KernelConfig(**t.params).canonical(workload.head_dim)
           for t in complete[:RETIME_TOP]]
    default = default.canonical(workload.head_dim)
    candidates = [cfg for cfg in dict.fromkeys([*top, default])
                  if check_config(cfg, workload.head_dim, workload.torch_dtype, gpu.arch,
                                  workload.rotary) is None]
    band = band_workloads(workload)
    started = time.time()
    if compiler is not None:
        _precompile(compiler, [(replace(plan, workload=shape), cfg)
                               for shape in band[:-1] for cfg in candidates])
    rates: dict[KernelConfig, list[float]] = {cfg: [] for cfg in candidates}
    for i, shape in enumerate(band):  # shape by shape: the worker keeps one shape's inputs
        for cfg in candidates:
            if len(rates[cfg]) == i:  # (a config that failed on an earlier shape is out)
                outcome = measure(worker, replace(plan, workload=shape), cfg)
                if outcome.ok:
                    rates[cfg].append(outcome.value["tflops"])
    whole = {cfg: r for cfg, r in rates.items() if len(r) == len(band)}
    best_cfg = max(whole, key=lambda c: math.prod(whole[c]), default=None)
    best_tflops = whole[best_cfg][-1] if best_cfg else None
    default_rates = whole.get(default)
    default_tflops = default_rates[-1] if default_rates else None
    retimed = time.time()
    peers = {}
    if not gpu.is_interpreter:  # the interpreter's wall times say nothing about peers
        for name in GPU_PEERS:
            outcome = measure(peer_worker or worker, plan, None, backend=name)
            if outcome.ok:
                peers[name] = outcome.value["tflops"]
    # When and for how long (the crown's share of a run's wall time, per bucket), and
    # what it crowned (scripts/compare_search.py weighs it against a sweep)
    crown = {"started": started, "retime_s": round(retimed - started, 2),
             "peers_s": round(time.time() - retimed, 2),
             "winner": best_cfg.to_dict() if best_cfg else None}
    study.set_user_attr("crown", crown)
    log.info("%s crowned: re-timed in %.1f s, peers in %.1f s", plan.study_name,
             crown["retime_s"], crown["peers_s"])
    return BucketResult(bucket_of(workload), workload, best_cfg, best_tflops, default_tflops,
                        peers, counts, plan.study_name)


def _precompile(compiler, work: list[tuple[SearchPlan, KernelConfig]]) -> None:
    """Compile each (shape, config) into Triton's cache, as many at once as the pool has
    processes (failures show up again, with their reason, when the config is measured)."""
    compiler.compile([request(p, cfg) for p, cfg in work])


def bucket_entry(result: BucketResult, provenance: dict | None = None) -> dict:
    """The YAML entry of a tuned bucket (see vitune.runtime.schema), with the provenance
    of the run that tuned it (kernel hash, versions, card, date)."""
    # The fastest measured, among backends the runtime can reproduce for this bucket.
    rates = {"triton": result.tflops or 0.0}
    rates.update({PEER_BACKENDS[name]: rate for name, rate in result.peers.items()
                  if name in PEER_BACKENDS})
    entry = {"head_dim": result.bucket.head_dim, "dtype": result.bucket.dtype,
             "regime": result.bucket.regime, "seqlen": result.bucket.seqlen,
             "rotary": result.bucket.rotary or None,
             "backend": max(rates, key=rates.get),
             "config": result.config.to_dict() if result.config else None,
             "tflops": _sig(result.tflops), "default_tflops": _sig(result.default_tflops),
             "peers": {k: _sig(v) for k, v in result.peers.items() if _sig(v) is not None},
             "trials": result.trials, "study": result.study_name,
             "provenance": provenance or None}
    return {k: v for k, v in entry.items() if v is not None}


def _sig(x: float | None) -> float | None:
    """Four significant digits: readable YAML, and interpreter rates do not round to 0.
    A rate that is not finite was not measured (None)."""
    return None if x is None or not math.isfinite(x) else float(f"{x:.4g}")
