"""Compare a sampled search with the exhaustive sweep of the same space (issue target:
within 3% of the sweep's best with at most 25% of its valid trials).

Usage: python scripts/compare_search.py SWEEP_STORAGE SEARCH_STORAGE [--winners YAML]
where each storage holds the studies of one `vitune tune` run (--sampler grid for the sweep).
Buckets are matched by their key alone (study names also hold the GPU and the kernel hash).

Two gaps per bucket: the two studies' maxima (each the best of many single timings, so
noise lifts both, the search's less for having fewer), and the config the search crowned
(what it delivers; recorded by the crown, or read from the YAML it wrote, --winners) at
the rate the sweep measured for it, against the sweep's best: both timed in one run. The
target is judged on the second where the sweep ran the crowned config."""

import argparse
import sys

import optuna

from vitune.kernels.vision_attn.space import KernelConfig
from vitune.tuner.search import bucket_studies, crowned_configs, trial_ran


def summarize(url: str) -> dict[str, tuple[float, int, dict[KernelConfig, float]]]:
    """bucket -> (best TFLOP/s, trials that ran: compiled, checked and timed, the rate of
    each config that completed)."""
    out = {}
    for bucket, study in bucket_studies(url):
        ran = [t for t in study.trials if trial_ran(t)]
        rates = {KernelConfig(**t.params): t.value for t in ran
                 if t.state == optuna.trial.TrialState.COMPLETE}
        out[bucket] = (max(rates.values(), default=0.0), len(ran), rates)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("sweep")
    parser.add_argument("search")
    parser.add_argument("--winners", help="the configs YAML the search's run wrote")
    args = parser.parse_args()
    sweep, search = summarize(args.sweep), summarize(args.search)
    crowned = crowned_configs(args.search, args.winners)
    ok = True
    print(f"{'bucket':28s} {'sweep best':>10s} {'trials':>6s} {'search best':>11s} "
          f"{'trials':>6s} {'gap':>6s}  {'crowned by the search':30s} {'in sweep':>8s} "
          f"{'gap':>6s} {'share':>6s}")
    for bucket, (best, n, rates) in sorted(sweep.items()):
        found, m, _ = search.get(bucket, (0.0, 0, {}))
        gap, share = 1 - found / best if best else 1.0, m / n if n else 0.0
        winner = crowned.get(bucket)
        swept = rates.get(winner) if winner else None
        winner_gap = 1 - swept / best if swept and best else None
        ok &= share <= 0.25 and (gap if winner_gap is None else winner_gap) <= 0.03
        print(f"{bucket:28s} {best:10.1f} {n:6d} {found:11.1f} {m:6d} {gap:6.1%}  "
              f"{winner.short() if winner else '-':30s} "
              f"{f'{swept:.1f}' if swept else '-':>8s} "
              f"{'-' if winner_gap is None else f'{winner_gap:.1%}':>6s} {share:6.0%}")
    print("target met" if ok else "target missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
