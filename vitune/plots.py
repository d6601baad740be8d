"""Charts from measured results: throughput vs segment length per head_dim, the window
regime on its own, cross-GPU comparison, and tuning convergence from a study storage.
Every title names the GPU, the software versions and the date of the run it shows."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from vitune.bench.workloads import PRESETS  # noqa: E402

_KNOWN = {w.name: w for preset in PRESETS.values() for w in preset}


def read_rows(paths: list[str | Path]) -> list[dict]:
    """The measured rows of bench JSON-lines files; ValueError in one sentence for a file
    that cannot be read or a line that is not a JSON object."""
    rows = []
    for path in paths:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}"
                             ) from None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if not isinstance(row, dict):
                raise ValueError(f"{path}: line {number} is not a JSON object (bench rows "
                                 "are JSON lines)")
            rows.append(row)
    return [r for r in rows if r.get("status") == "ok"]


def _max_seqlen(row: dict) -> int | None:
    if "max_seqlen" in row:
        return row["max_seqlen"]
    known = _KNOWN.get(row["workload"])
    return known.max_seqlen if known else None


def _title(rows: list[dict], what: str) -> str:
    r = rows[0]
    return (f"{what}: {r.get('device_name')} | torch {r.get('torch')}, triton "
            f"{r.get('triton')} | {r.get('date')}")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def plot_throughput(rows: list[dict], out_dir: str | Path) -> list[Path]:
    """Per GPU: useful TFLOP/s vs longest segment, one panel per head_dim, one line per
    backend (full attention); and the window regime as a bar chart of its own."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for device, dev_rows in _group(rows, "device_name").items():
        full = [r for r in dev_rows if r.get("regime") == "full"]
        if full:
            dims = sorted({r["head_dim"] for r in full})
            fig, axes = plt.subplots(1, len(dims), figsize=(4.5 * len(dims), 4), squeeze=False)
            for ax, dim in zip(axes[0], dims, strict=True):
                for backend, b_rows in _group([r for r in full if r["head_dim"] == dim],
                                              "backend").items():
                    points = sorted((_max_seqlen(r), r["tflops"]) for r in b_rows
                                    if _max_seqlen(r))
                    ax.plot(*zip(*points, strict=True), marker="o", label=backend)
                ax.set_xscale("log", base=2)
                ax.set_title(f"head_dim {dim}")
                ax.set_xlabel("longest segment (tokens)")
                ax.set_ylabel("useful TFLOP/s")
                ax.grid(alpha=0.3)
            axes[0][-1].legend(fontsize=7)
            fig.suptitle(_title(dev_rows, "full attention"), fontsize=9)
            written.append(_save(fig, out_dir / f"throughput-{_slug(device)}.png"))
        window = [r for r in dev_rows if r.get("regime") == "window"]
        if window:
            written.append(_bars(window, out_dir / f"windows-{_slug(device)}.png",
                                 _title(dev_rows, "window regime (<= 64-token segments)")))
    return written


def plot_cross_gpu(rows: list[dict], out_dir: str | Path, backend: str) -> Path | None:
    """One backend's TFLOP/s per workload, one bar per GPU."""
    chosen = [r for r in rows if r["backend"] == backend]
    if len({r["device_name"] for r in chosen}) < 2:
        return None
    fig, ax = plt.subplots(figsize=(10, 4))
    workloads = list(dict.fromkeys(r["workload"] for r in chosen))
    devices = list(_group(chosen, "device_name"))
    width = 0.8 / len(devices)
    for i, device in enumerate(devices):
        values = {r["workload"]: r["tflops"] for r in chosen if r["device_name"] == device}
        versions = next(r for r in chosen if r["device_name"] == device)
        ax.bar([j + i * width for j in range(len(workloads))],
               [values.get(w, 0.0) for w in workloads], width,
               label=f"{device} (torch {versions['torch']}, triton {versions['triton']}, "
                     f"{versions['date']})")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(workloads))], workloads,
                  rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("useful TFLOP/s")
    ax.set_title(f"{backend} across GPUs", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, Path(out_dir) / f"cross-gpu-{_slug(backend)}.png")


def plot_tuned_configs(config_dir: str | Path, out_dir: str | Path) -> Path | None:
    """The tuned files side by side when a folder holds several `<gpu>.yaml`: per bucket,
    the tuned kernel's TFLOP/s on each GPU (solid) and the best peer measured in the same
    run (hatched). None with fewer than two GPU files."""
    from vitune.runtime.schema import load_config_file

    docs = [load_config_file(p) for p in sorted(Path(config_dir).glob("*.yaml"))]
    docs = [d for d in docs if not d.get("interpreter")]
    if len(docs) < 2:
        return None
    buckets = list(dict.fromkeys(_bucket_label(b) for d in docs for b in d["buckets"]))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(buckets)), 4))
    width = 0.8 / len(docs)
    for i, doc in enumerate(docs):
        by_label = {_bucket_label(b): b for b in doc["buckets"]}
        xs = [j + i * width for j in range(len(buckets))]
        tuned = [by_label[b].get("tflops", 0.0) if b in by_label else 0.0 for b in buckets]
        peers = [max(by_label[b].get("peers", {}).values(), default=0.0) if b in by_label
                 else 0.0 for b in buckets]
        prov = doc.get("provenance", {})
        bars = ax.bar(xs, tuned, width, label=f"{doc['gpu']} tuned ({prov.get('device_name')}, "
                      f"triton {prov.get('triton')}, {prov.get('date')})")
        ax.bar(xs, peers, width, fill=False, hatch="//", edgecolor=bars[0].get_facecolor(),
               label=f"{doc['gpu']} best peer")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(buckets))], buckets, rotation=30,
                  ha="right", fontsize=7)
    ax.set_ylabel("useful TFLOP/s")
    ax.set_title("tuned configs across GPUs (each GPU's own tuning run)", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, Path(out_dir) / "cross-gpu-tuned.png")


def _bucket_label(bucket: dict) -> str:
    return f"d{bucket['head_dim']} {bucket['dtype']} {bucket['regime']} L{bucket['seqlen']}"


def plot_convergence(storages: str | list[str], out_dir: str | Path) -> list[Path]:
    """Best-so-far TFLOP/s against trials that ran (configs the validity rules rejected
    cost nothing and are not counted), one chart per study name, one line per storage: pass
    a sampled search's storage and an exhaustive sweep's to see how fast each gets there."""
    import optuna

    from vitune.tuner.studies import open_storage, trial_ran

    curves: dict[str, list[tuple[str, list[int], list[float], str]]] = {}
    for url in [storages] if isinstance(storages, str) else storages:
        store = open_storage(url, read_only=True)
        for summary in optuna.get_all_study_summaries(store):
            study = optuna.load_study(study_name=summary.study_name, storage=store)
            best, ran, failed, xs, ys = 0.0, 0, 0, [], []
            for t in sorted(study.trials, key=lambda t: t.number):
                if not trial_ran(t):
                    continue
                ran += 1
                if t.state == optuna.trial.TrialState.COMPLETE:
                    best = max(best, t.value or 0.0)
                else:
                    failed += 1
                if best:
                    xs.append(ran)
                    ys.append(best)
            if xs:
                label = f"{Path(url).stem}: {ran} ran, {failed} failed, best {best:.1f}"
                curves.setdefault(summary.study_name, []).append((label, xs, ys, url))
    written = []
    for name, lines in curves.items():
        fig, ax = plt.subplots(figsize=(5.5, 3.5))
        for label, xs, ys, _ in lines:
            ax.step(xs, ys, where="post", label=label)
        ax.set_xscale("log")
        ax.set_xlabel("trials that ran (compiled, checked, timed)")
        ax.set_ylabel("best useful TFLOP/s so far")
        ax.set_title(name, fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        written.append(_save(fig, Path(out_dir) / f"convergence-{_slug(name)}.png"))
    return written


def _bars(rows: list[dict], path: Path, title: str) -> Path:
    """One group of bars per workload (e.g. each head dim's windows), one bar per backend;
    a backend's best row where it appears more than once in a workload."""
    workloads = _group(rows, "workload")
    backends = list(_group(rows, "backend"))
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.25 * len(workloads) * len(backends)))
    height = 0.8 / max(len(backends), 1)
    for i, backend in enumerate(backends):
        rates = [max((r["tflops"] for r in rs if r["backend"] == backend), default=0.0)
                 for rs in workloads.values()]
        ax.barh([w + i * height for w in range(len(workloads))], rates, height=height,
                label=backend)
    ax.set_yticks([w + 0.4 - height / 2 for w in range(len(workloads))], list(workloads))
    ax.invert_yaxis()
    ax.set_xlabel("useful TFLOP/s")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7)
    return _save(fig, path)


def _group(rows: list[dict], key: str) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r[key]].append(r)
    return dict(groups)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
