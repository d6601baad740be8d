"""Compare a sampled search with the exhaustive sweep of the same space (issue target:
within 3% of the sweep's best with at most 25% of its valid trials).

Usage: python scripts/compare_search.py SWEEP_STORAGE SEARCH_STORAGE
where each storage holds the studies of one `vitune tune` run (--sampler grid for the sweep).
Buckets are matched by their key alone (study names also hold the GPU and the kernel hash)."""

import sys

import optuna

from vitune.tuner.search import bucket_studies, trial_ran


def summarize(url: str) -> dict[str, tuple[float, int]]:
    """bucket -> (best TFLOP/s, trials that ran: compiled, checked and timed)."""
    out = {}
    for bucket, study in bucket_studies(url):
        ran = [t for t in study.trials if trial_ran(t)]
        done = [t for t in ran if t.state == optuna.trial.TrialState.COMPLETE]
        out[bucket] = (max((t.value for t in done), default=0.0), len(ran))
    return out


def main() -> int:
    sweep, search = summarize(sys.argv[1]), summarize(sys.argv[2])
    ok = True
    print(f"{'bucket':45s} {'sweep best':>10s} {'trials':>6s} {'search best':>11s} "
          f"{'trials':>6s} {'gap':>6s} {'share':>6s}")
    for bucket, (best, n) in sorted(sweep.items()):
        found, m = search.get(bucket, (0.0, 0))
        gap, share = 1 - found / best if best else 1.0, m / n if n else 0.0
        ok &= gap <= 0.03 and share <= 0.25
        print(f"{bucket:45s} {best:10.1f} {n:6d} {found:11.1f} {m:6d} {gap:6.1%} {share:6.0%}")
    print("target met" if ok else "target missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
