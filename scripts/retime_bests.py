"""Re-time the config a sweep and a sampled search each crowned (their best trial where a
run predates the crown recording it) side by side, per bucket: the best of hundreds of
single timings is biased upwards by noise, so the comparison of the two studies' maxima
alone (scripts/compare_search.py) can overstate a gap, or hide one.

    python scripts/retime_bests.py SWEEP_STORAGE SEARCH_STORAGE [--rounds 5]
        [--winners SEARCH_YAML]
"""

from __future__ import annotations

import argparse
import functools
import statistics

import optuna
import torch

from vitune.kernels.vision_attn.launch import launch_vision_attention
from vitune.kernels.vision_attn.space import KernelConfig
from vitune.tuner.measure import time_gpu
from vitune.tuner.presets import TUNE_PRESETS, bucket_of
from vitune.tuner.search import bucket_studies, crowned_configs, trial_ran


def bests(url: str, winners_yaml: str | None = None) -> dict[str, KernelConfig]:
    """bucket -> the config the run crowned, or else its best trial that ran."""
    out = {}
    for bucket, study in bucket_studies(url):
        done = [t for t in study.trials
                if trial_ran(t) and t.state == optuna.trial.TrialState.COMPLETE]
        if done:
            out[bucket] = KernelConfig(**max(done, key=lambda t: t.value).params)
    return out | crowned_configs(url, winners_yaml)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sweep")
    parser.add_argument("search")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--winners", help="the configs YAML the search's run wrote")
    args = parser.parse_args()
    sweep, search = bests(args.sweep), bests(args.search, args.winners)
    device = torch.device("cuda")
    print(f"{'bucket':28s} {'sweep crowned':36s} {'TF/s':>6s} {'search crowned':36s} {'TF/s':>6s}"
          f" {'gap':>6s}")
    for w in TUNE_PRESETS["qwen2.5-vl"]:
        key = bucket_of(w).key
        if key not in sweep or key not in search:
            continue
        q, k, v = w.make_qkv(device)
        cu = w.cu_seqlens(device)
        out = torch.empty_like(q)
        runs = {name: functools.partial(launch_vision_attention, q, k, v, out, cu,
                                        w.head_dim ** -0.5, cfg)
                for name, cfg in (("sweep", sweep[key]), ("search", search[key]))}
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):  # alternate, so drift hits both alike
            for name, run in runs.items():
                times[name].append(time_gpu(run).median_ms)
        tf = {name: w.tflops(statistics.median(t)) for name, t in times.items()}
        print(f"{key:28s} {sweep[key].short():36s} {tf['sweep']:6.1f} "
              f"{search[key].short():36s} {tf['search']:6.1f} "
              f"{1 - tf['search'] / tf['sweep']:6.1%}", flush=True)


if __name__ == "__main__":
    main()
