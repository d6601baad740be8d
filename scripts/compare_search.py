"""Compare a sampled search with the exhaustive sweep of the same space (the tuner's target:
within 3% of the sweep's best with at most 25% of its valid trials).

    python scripts/compare_search.py SWEEP SEARCH_STORAGE [--winners YAML]

SWEEP: a sweep table (data/sweeps/; sweep_table.py) or the Optuna storage of a `vitune tune
--sampler grid` run; SEARCH_STORAGE: the storage of the `vitune tune` run to judge.
Buckets are matched by their key alone (study names also hold the GPU and the kernel hash).

Two gaps per bucket: the two studies' maxima (each the best of many single timings, so
noise lifts both, the search's less for having fewer), and the config the search crowned
(what it delivers; recorded by the crown, or read from the YAML it wrote, --winners) at
the rate the sweep measured for it, against the sweep's best: both timed in one run. The
target is judged on the second where the sweep ran the crowned config. Exit status 0 when
the target is met in every bucket, 1 when not, 2 for unreadable input."""

import argparse
import sys

from sweep_table import SweepBucket, load_sweep

from vitune.tuner.studies import crowned_configs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", help="a sweep table (.jsonl) or a sweep's Optuna storage")
    parser.add_argument("search", help="the Optuna storage of the search's run")
    parser.add_argument("--winners", help="the configs YAML the search's run wrote")
    args = parser.parse_args(argv)
    try:
        sweep, search = load_sweep(args.sweep), load_sweep(args.search)
        crowned = crowned_configs(args.search, args.winners)
    except ValueError as exc:
        print(f"compare_search: {exc}", file=sys.stderr)
        return 2
    ok = True
    print(f"{'bucket':28s} {'sweep best':>10s} {'trials':>6s} {'search best':>11s} "
          f"{'trials':>6s} {'gap':>6s}  {'crowned by the search':30s} {'in sweep':>8s} "
          f"{'gap':>6s} {'share':>6s}")
    for bucket, swept_bucket in sorted(sweep.items()):
        best, n = swept_bucket.best, swept_bucket.ran
        found_bucket = search.get(bucket, SweepBucket())
        found, m = found_bucket.best, found_bucket.ran
        gap, share = 1 - found / best if best else 1.0, m / n if n else 0.0
        winner = crowned.get(bucket)
        swept = swept_bucket.rates.get(winner) if winner else None
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
