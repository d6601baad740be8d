"""Replay the tuner's search loop (vitune.tuner.search_loop.search, unchanged) against a finished
sweep instead of a GPU: each trial gets the TFLOP/s the sweep measured for its config, so a
sampler's behaviour can be studied on the CPU over many seeds. A config the sweep did not
reach counts as a failed trial (pessimistic for a partial sweep).

    python scripts/replay_search.py SWEEP [--gpu h100] [--seeds 20] [--budget N]
        [--samplers tpe,random] [--jobs 14] [--buckets KEY,...]

SWEEP: a sweep table (data/sweeps/h100-qwen2.5-vl.jsonl: the H100 sweep of the qwen2.5-vl
preset's buckets; sweep_table.py) or the Optuna storage of a `vitune tune --sampler grid`
run.

Configs are picked as the tuner picks them, with --jobs configs kept on their way to the
GPU: each pick sees none of their results. (On a GPU that depth adapts to the compile and
timing times, vitune/tuner/pipeline.py: about 4 where compiles are cache hits, 10-14 in a
bucket of fresh compiles on an H200; here it is fixed.)

Prints, per bucket and sampler, the gap to the sweep's best over the seeds (median, worst)
and the share of seeds within 3%, with the budget used (default: the tuner's own)."""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from collections.abc import Iterator
from concurrent.futures import Future

import optuna
from sweep_table import load_sweep

from vitune.bench.presets import TUNE_PRESETS, bucket_of
from vitune.kernels.vision_attn.space import KernelConfig
from vitune.runtime.gpu import identity_for_key
from vitune.tuner import pipeline
from vitune.tuner import plan as plan_module
from vitune.tuner import search_loop as loop
from vitune.tuner.isolation import Outcome
from vitune.tuner.plan import TuneOptions, plan_bucket, trial_budget
from vitune.tuner.trial import PREPARE


class SweepOracle:
    """Stands in for the trial worker: the sweep's measured rate of each config."""

    def __init__(self, rates: dict[KernelConfig, float]) -> None:
        self.rates = rates
        self.sent = None

    def send(self, req) -> None:
        self.sent = req

    def ready(self) -> bool:  # (timing "takes" as long as the picks: the depth is fixed)
        return False

    def receive(self, timeout_s):
        return self.call(self.sent, timeout_s)

    def call(self, req, timeout_s):
        if req.backend == PREPARE:  # (the inputs a real worker builds while compiling)
            return Outcome(True, {})
        rate = self.rates.get(KernelConfig.from_dict(req.config))
        if rate is None:
            return Outcome(False, reason="not measured by the sweep")
        return Outcome(True, {"median_ms": 1.0 / rate, "tflops": rate})


class InstantCompiler:
    """Stands in for the compile pool of `jobs` processes: compiles nothing."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs

    def submit(self, requests):
        futures = [Future() for _ in requests]
        for future in futures:
            future.set_result(Outcome(True, {"compile_s": 0.0}))
        return futures


_MEMORY: dict[str, optuna.storages.InMemoryStorage] = {}


@contextlib.contextmanager
def replaying(refine_share: float = loop.REFINE_SHARE,
              refine_top: int = loop.REFINE_TOP) -> Iterator[None]:
    """The tuner as a replay runs it, restored on the way out: `memory:NAME` storages (one
    in-memory storage per name: a replay needs no database), the pipeline's depth fixed at
    its size (--jobs: there are no compile or GPU times to adapt it to), and the refine
    step's share of the budget and width."""
    real_open = loop.open_storage

    def open_in_memory(url: str, read_only: bool = False):
        if url.startswith("memory:"):
            return _MEMORY.setdefault(url, optuna.storages.InMemoryStorage())
        return real_open(url, read_only)

    saved = (loop.open_storage, plan_module.open_storage, pipeline.Pipeline.depth,
             loop.REFINE_SHARE, loop.REFINE_TOP)
    loop.open_storage = plan_module.open_storage = open_in_memory
    pipeline.Pipeline.depth = lambda self: self.size
    loop.REFINE_SHARE, loop.REFINE_TOP = refine_share, refine_top
    try:
        yield
    finally:
        (loop.open_storage, plan_module.open_storage, pipeline.Pipeline.depth,
         loop.REFINE_SHARE, loop.REFINE_TOP) = saved
        _MEMORY.clear()


def replay(workload, gpu, rates, sampler: str, seed: int, budget: int, jobs: int) -> float:
    """The best rate one search finds, planned as `vitune tune` plans it (the built-in
    default and the SGLang-style constants first). Call it inside `replaying()`."""
    url = f"memory:{workload.name}:{sampler}:{seed}"
    opts = TuneOptions(trials=budget, sampler=sampler, seed=seed, storage=url)
    plan, _ = plan_bucket(workload, gpu, opts)
    loop.search(plan, SweepOracle(rates), seed_offset=0, compiler=InstantCompiler(jobs))
    study = optuna.load_study(study_name=plan.study_name, storage=loop.open_storage(url))
    _MEMORY.pop(url)
    done = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
            and loop.trial_ran(t)]
    return max(done, default=0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", help="a sweep table (.jsonl) or a sweep's Optuna storage")
    parser.add_argument("--gpu", default="h100", help="the GPU key whose space is searched")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=int, help="trials per search (default: the tuner's)")
    parser.add_argument("--samplers", default="tpe,random")
    parser.add_argument("--buckets", help="comma-separated bucket keys (default: all swept)")
    parser.add_argument("--refine-share", type=float, default=loop.REFINE_SHARE,
                        help="share of the budget spent on neighbours of the best (0: off)")
    parser.add_argument("--jobs", type=int, default=14,
                        help="configs on their way to the GPU while the next is picked")
    parser.add_argument("--refine-top", type=int, default=loop.REFINE_TOP)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    gpu = identity_for_key(args.gpu)
    try:
        sweeps = load_sweep(args.sweep)
    except ValueError as exc:
        print(f"replay_search: {exc}", file=sys.stderr)
        return 2
    wanted = set(args.buckets.split(",")) if args.buckets else set(sweeps)
    print(f"{'bucket':28s} {'sampler':8s} {'budget':>6s} {'sweep':>6s} {'median gap':>10s} "
          f"{'worst':>6s} {'<= 3%':>6s}")
    with replaying(args.refine_share, args.refine_top):
        for w in TUNE_PRESETS["qwen2.5-vl"]:
            key = bucket_of(w).key
            if key not in wanted or key not in sweeps:
                continue
            rates = sweeps[key].rates
            n_valid = len(loop.bucket_configs(w, gpu.arch))
            budget = args.budget or trial_budget(None, n_valid)
            best = max(rates.values())
            for sampler in args.samplers.split(","):
                gaps = [1 - replay(w, gpu, rates, sampler, seed, budget, args.jobs) / best
                        for seed in range(args.seeds)]
                print(f"{key:28s} {sampler:8s} {budget:6d} {best:6.1f} "
                      f"{statistics.median(gaps):10.1%} {max(gaps):6.1%} "
                      f"{sum(g <= 0.03 for g in gaps) / len(gaps):6.0%}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
