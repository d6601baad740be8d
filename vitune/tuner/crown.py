"""The crown of a searched bucket: its best few configs re-timed beside the built-in default
on the shapes the bucket will serve, the fastest crowned, the peer backends measured in
the same run, and the bucket's entry for the configs YAML."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace

import optuna

from vitune.bench.backends import LIBRARY_PEERS
from vitune.bench.presets import Bucket, bucket_of
from vitune.bench.workloads import Workload
from vitune.kernels.vision_attn.space import KernelConfig, check_config
from vitune.runtime.backend_names import PEER_BACKENDS
from vitune.tuner.isolation import IsolatedWorker
from vitune.tuner.pipeline import measure, request
from vitune.tuner.plan import SearchPlan
from vitune.tuner.studies import open_storage, trial_counts, trial_ran

log = logging.getLogger(__name__)
GPU_PEERS = (*LIBRARY_PEERS, "sglang-style-fixed")
RETIME_TOP = 5


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
    # The peers the runtime can run, timed as a caller who passes out= gets them (their
    # result copied into it); vitune's kernel writes out directly: `tflops` holds for both.
    peers_with_out: dict[str, float] = field(default_factory=dict)


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
    of 2 x H200 crowns; docs/decisions.md). Now these are expected to be cache hits: kept
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
    peers, peers_with_out = {}, {}
    if not gpu.is_interpreter:  # the interpreter's wall times say nothing about peers
        # (with rotary, a library's q and k rotated by vitune's pass: as `auto` runs them)
        for name in GPU_PEERS:
            outcome = measure(peer_worker or worker, plan, None, backend=name,
                              vitune_rotation=True)
            if outcome.ok:
                peers[name] = outcome.value["tflops"]
        for name in (n for n in peers if n in PEER_BACKENDS):
            outcome = measure(peer_worker or worker, plan, None, backend=name, given_out=True,
                              vitune_rotation=True)
            if outcome.ok:
                peers_with_out[name] = outcome.value["tflops"]
    # When and for how long (the crown's share of a run's wall time, per bucket), and
    # what it crowned (scripts/compare_search.py weighs it against a sweep)
    crown = {"started": started, "retime_s": round(retimed - started, 2),
             "peers_s": round(time.time() - retimed, 2),
             "winner": best_cfg.to_dict() if best_cfg else None}
    study.set_user_attr("crown", crown)
    log.info("%s crowned: re-timed in %.1f s, peers in %.1f s", plan.study_name,
             crown["retime_s"], crown["peers_s"])
    return BucketResult(bucket_of(workload), workload, best_cfg, best_tflops, default_tflops,
                        peers, counts, plan.study_name, peers_with_out)


def _precompile(compiler, work: list[tuple[SearchPlan, KernelConfig]]) -> None:
    """Compile each (shape, config) into Triton's cache, as many at once as the pool has
    processes (failures show up again, with their reason, when the config is measured)."""
    compiler.compile([request(p, cfg) for p, cfg in work])


def bucket_entry(result: BucketResult, provenance: dict | None = None) -> dict:
    """The YAML entry of a tuned bucket (see vitune.runtime.schema), with the provenance
    of the run that tuned it (kernel hash, versions, card, date)."""
    entry = {"head_dim": result.bucket.head_dim, "dtype": result.bucket.dtype,
             "regime": result.bucket.regime, "seqlen": result.bucket.seqlen,
             "rotary": result.bucket.rotary or None,
             "backend": _fastest(result.tflops, result.peers),
             "backend_with_out": _fastest(result.tflops, result.peers_with_out)
             if result.peers_with_out else None,
             "config": result.config.to_dict() if result.config else None,
             "tflops": _sig(result.tflops), "default_tflops": _sig(result.default_tflops),
             "peers": _rates(result.peers), "peers_with_out": _rates(result.peers_with_out)
             or None,
             "trials": result.trials, "study": result.study_name,
             "provenance": provenance or None}
    return {k: v for k, v in entry.items() if v is not None}


def _fastest(kernel_tflops: float | None, peers: dict[str, float]) -> str:
    """The fastest measured among vitune's kernel and the peers the runtime can run."""
    rates = {"triton": kernel_tflops or 0.0}
    rates.update({PEER_BACKENDS[name]: rate for name, rate in peers.items()
                  if name in PEER_BACKENDS})
    return max(rates, key=rates.get)


def _rates(peers: dict[str, float]) -> dict[str, float]:
    return {k: _sig(v) for k, v in peers.items() if _sig(v) is not None}


def _sig(x: float | None) -> float | None:
    """Four significant digits: readable YAML, and interpreter rates do not round to 0.
    A rate that is not finite was not measured (None)."""
    return None if x is None or not math.isfinite(x) else float(f"{x:.4g}")
