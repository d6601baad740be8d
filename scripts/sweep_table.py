"""Sweep tables: what an exhaustive sweep measured, one JSON line per config that ran, the
form in which sweeps are kept (data/sweeps/) as oracles for replay_search.py and
compare_search.py. Both read a table or an Optuna storage alike (load_sweep).

    python scripts/sweep_table.py STORAGE... --out data/sweeps/NAME.jsonl

STORAGE: the Optuna storage of a `vitune tune --sampler grid` run (sqlite:///..., or
journal:PATH); several are merged into one table. Each line: the GPU key, the bucket key
and the kernel hash (from the study name), the config, its status ("ok" or "failed"), and
for "ok" the useful TFLOP/s it was timed at, for "failed" why. Trials the rules rejected or
that repeated an earlier config are left out: they never ran."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from vitune.bench.json_lines import json_lines
from vitune.kernels.vision_attn.space import KernelConfig
from vitune.tuner.studies import open_storage, trial_ran

REASON_CHARS = 200  # (a failure's reason is kept short: the table is data, not a log)


@dataclass
class SweepBucket:
    """One bucket of a sweep or search: the rate of every config that completed, and how
    many trials ran (compiled, checked and timed, failed ones included)."""

    rates: dict[KernelConfig, float] = field(default_factory=dict)
    ran: int = 0

    @property
    def best(self) -> float:
        return max(self.rates.values(), default=0.0)


def table_rows(url: str) -> list[dict]:
    """The sweep table's rows of one storage, study by study (names GPU:bucket:hash). Each
    config in its canonical form (the one a search asks for: a grid asks for every form)."""
    rows = []
    storage = open_storage(url, read_only=True)
    for summary in optuna.get_all_study_summaries(storage):
        gpu, bucket, kernel = summary.study_name.split(":")
        head_dim = int(bucket.split("-")[0].removeprefix("d"))  # (d80-bfloat16-window-L64)
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        seen = set()
        for t in study.get_trials(deepcopy=False):
            cfg = KernelConfig(**t.params).canonical(head_dim)
            if not trial_ran(t) or cfg in seen:
                continue
            seen.add(cfg)
            row = {"gpu": gpu, "bucket": bucket, "kernel": kernel, "config": cfg.to_dict()}
            if t.state == optuna.trial.TrialState.COMPLETE:
                row |= {"status": "ok", "tflops": round(t.value, 3)}
            else:
                row |= {"status": "failed",
                        "reason": str(t.user_attrs.get("reason", ""))[:REASON_CHARS]}
            rows.append(row)
    return rows


def read_table(path: str | Path) -> list[dict]:
    """A sweep table's rows; ValueError in one sentence where a line is not one."""
    rows = []
    for number, row in json_lines(path):
        try:
            KernelConfig.from_dict(row["config"])
            if row["status"] == "ok":
                float(row["tflops"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: line {number} is not a sweep table row") from None
        rows.append(row)
    return rows


def load_sweep(source: str) -> dict[str, SweepBucket]:
    """bucket key -> what ran there, from a sweep table (a .jsonl path) or an Optuna
    storage URL (a sweep's, or a search's)."""
    rows = read_table(source) if source.endswith(".jsonl") else table_rows(source)
    buckets: dict[str, SweepBucket] = {}
    for row in rows:
        bucket = buckets.setdefault(row["bucket"], SweepBucket())
        bucket.ran += 1
        if row["status"] == "ok":
            bucket.rates[KernelConfig.from_dict(row["config"])] = row["tflops"]
    return buckets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("storages", nargs="+", help="Optuna storages of sweeps")
    parser.add_argument("--out", required=True, help="the table to write (.jsonl)")
    args = parser.parse_args(argv)
    try:
        rows = [row for url in args.storages for row in table_rows(url)]
    except ValueError as exc:
        print(f"sweep_table: {exc}", file=sys.stderr)
        return 2
    Path(args.out).write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
