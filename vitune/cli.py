"""Command line: `vitune bench|sweep ...` (tune, plot, show and validate come with the
tuner and the runtime selector)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from vitune.tuner.workloads import PRESETS

BACKENDS = ("vitune-default", "sglang-style-fixed", "sdpa-flash", "sdpa-cudnn", "sdpa-memeff",
            "sdpa-masked", "varlen_attn", "flash_attn")


def write_jsonl(rows: list[dict], path: Path) -> None:
    """Atomic: the file is either the old one or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    os.replace(tmp, path)


def _pick_workloads(args: argparse.Namespace):
    workloads = list(PRESETS[args.preset])
    if args.workloads:
        wanted = [name.strip() for name in args.workloads.split(",")]
        known = {w.name: w for w in workloads}
        missing = [n for n in wanted if n not in known]
        if missing:
            sys.exit(f"vitune: unknown workload(s) {missing}; preset {args.preset!r} has "
                     f"{sorted(known)}")
        workloads = [known[n] for n in wanted]
    return workloads


def _cuda_device():
    import torch

    if not torch.cuda.is_available():
        sys.exit("vitune: benchmarks need a CUDA GPU and none was found")
    return torch.device("cuda", torch.cuda.current_device())


def _print_table(rows: list[dict], columns: list[str], pivot: str) -> None:
    """Workloads down, `pivot` values across, useful TFLOP/s in the cells."""
    from rich.console import Console
    from rich.table import Table

    cols = list(dict.fromkeys(r[pivot] for r in rows))
    table = Table(title=f"useful TFLOP/s on {rows[0].get('device_name')} (torch "
                        f"{rows[0]['torch']}, triton {rows[0]['triton']}, {rows[0]['date']})")
    table.add_column("workload")
    for c in cols:
        table.add_column(str(c), justify="right")
    for wl in dict.fromkeys(r["workload"] for r in rows):
        cells = []
        for c in cols:
            r = next((r for r in rows if r["workload"] == wl and r[pivot] == c), None)
            cells.append(f"{r['tflops']:.1f}" if r and r.get("status") == "ok"
                         else (r or {}).get("status", "-"))
        table.add_row(wl, *cells)
    Console(width=200).print(table)


def cmd_bench(args: argparse.Namespace) -> int:
    from vitune.bench.kernels import iter_bench

    backends = list(BACKENDS) if args.backends == "all" else args.backends.split(",")
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        sys.exit(f"vitune: unknown backend(s) {unknown}; known: {list(BACKENDS)}")
    rows = []
    for row in iter_bench(_pick_workloads(args), backends, _cuda_device()):
        rows.append(row)
        write_jsonl(rows, Path(args.out))  # what was measured survives a crash or Ctrl-C
    _print_table(rows, backends, pivot="backend")
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from vitune.bench.sweep import sweep_configs

    rows = sweep_configs(_pick_workloads(args), _cuda_device(), rep_ms=args.rep_ms)
    write_jsonl(rows, Path(args.out))
    for wl in dict.fromkeys(r["workload"] for r in rows):
        ok = sorted((r for r in rows if r["workload"] == wl and r["status"] == "ok"),
                    key=lambda r: -r["tflops"])
        bad = [r for r in rows if r["workload"] == wl and r["status"] != "ok"]
        print(f"{wl}: {len(ok)} ok, {len(bad)} failed")
        for r in ok[:5]:
            print(f"  {r['config']:32s} {r['tflops']:7.1f} TFLOP/s  {r['median_ms'] * 1e3:8.1f} us")
        if ok:
            print(f"  worst: {ok[-1]['config']} {ok[-1]['tflops']:.1f} TFLOP/s")
        for r in bad[:5]:
            print(f"  FAILED {r['config']}: {r['status']} {r.get('error', r.get('rel_error'))}")
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitune", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def add_workload_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--preset", choices=sorted(PRESETS), default="context")
        p.add_argument("--workloads", help="comma-separated workload names of the preset")

    bench = sub.add_parser("bench", help="every backend on every workload, same run")
    add_workload_args(bench)
    bench.add_argument("--backends", default="all",
                       help=f"comma-separated, or 'all': {', '.join(BACKENDS)}")
    bench.add_argument("--out", default="results/bench.jsonl")
    bench.set_defaults(func=cmd_bench)

    sweep = sub.add_parser("sweep", help="time every valid kernel config on workloads")
    add_workload_args(sweep)
    sweep.add_argument("--rep-ms", type=float, default=50)
    sweep.add_argument("--out", default="results/sweep.jsonl")
    sweep.set_defaults(func=cmd_sweep)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
