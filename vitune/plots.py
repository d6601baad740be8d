"""Charts from measured results, one question each: throughput vs segment length per GPU
and head_dim, the window regime on its own, cross-GPU comparison, and tuning convergence
from a study storage. Every title names the GPU, the software versions and the date of the
run it shows; legends sit outside the axes, and the saved area takes in every title and
legend."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from vitune.bench.json_lines import json_lines  # noqa: E402
from vitune.bench.kernels import row_label  # noqa: E402
from vitune.bench.workloads import PRESETS  # noqa: E402

_KNOWN = {w.name: w for preset in PRESETS.values() for w in preset}


# What a bench row needs to be drawn; the rest (head_dim, regime, versions) is optional.
ROW_KEYS = ("workload", "backend", "tflops")
# One look per backend in every chart: vitune's own solid, the peers dashed, the ones far
# behind dotted; distinct hues and markers, so no two lines are told apart by shade alone.
STYLES = {
    "vitune-auto": ("#1f77b4", "o", "-"),
    "vitune-tuned": ("#2ca02c", "s", "-"),
    "vitune-default": ("#17becf", "D", "-"),
    "sdpa-cudnn": ("#d62728", "^", "--"),
    "sdpa-flash": ("#ff7f0e", "v", "--"),
    "varlen_attn": ("#9467bd", "P", "--"),
    "flash_attn": ("#8c564b", "X", "--"),
    "sglang-style-fixed": ("#e377c2", "*", "--"),
    "sdpa-memeff": ("#7f7f7f", "<", ":"),
    "sdpa-masked": ("#000000", ">", ":"),
}
_SPARE_COLOURS = ("#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")


def read_rows(paths: list[str | Path]) -> list[dict]:
    """The measured rows of bench JSON-lines files; ValueError in one sentence for a file
    that cannot be read or a line that is not a bench row."""
    rows = []
    for path in paths:
        for number, row in json_lines(path):
            if not isinstance(row, dict):
                raise ValueError(f"{path}: line {number} is not a JSON object (bench rows "
                                 "are JSON lines)")
            if row.get("status") != "ok":
                continue
            if missing := [k for k in ROW_KEYS if k not in row]:
                raise ValueError(f"{path}: line {number} has no {', '.join(missing)}: not a "
                                 "row of `vitune bench` (kernels)")
            if not isinstance(row["tflops"], (int, float)) or not row["tflops"] >= 0:
                raise ValueError(f"{path}: line {number}: tflops {row['tflops']!r} is not a "
                                 "number >= 0")
            rows.append(row)
    return rows


def _max_seqlen(row: dict) -> int | None:
    if "max_seqlen" in row:
        return row["max_seqlen"]
    known = _KNOWN.get(row["workload"])
    return known.max_seqlen if known else None


def _device(row: dict) -> str:
    return str(row.get("device_name") or "unknown GPU")


def _style(label: str, index: int) -> dict:
    """Line and bar style of a backend label, the same in every chart."""
    base = label.removesuffix(" out=").removesuffix("+rotary")
    colour, marker, line = STYLES.get(base, (_SPARE_COLOURS[index % len(_SPARE_COLOURS)],
                                             "o", "-."))
    if label != base:  # (rotary or out=: the same colour, hollow markers)
        return {"color": colour, "marker": marker, "linestyle": line, "mfc": "white"}
    return {"color": colour, "marker": marker, "linestyle": line}


def _title(rows: list[dict], what: str) -> str:
    """Two lines: the question, then the GPU, versions and dates of the runs it shows."""
    def values(key: str) -> str:
        return ", ".join(dict.fromkeys(str(r.get(key)) for r in rows))

    return (f"{what}\n{values('device_name')} | torch {values('torch')}, triton "
            f"{values('triton')} | {values('date')}")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def _legend_outside(ax, **kwargs) -> None:
    """The legend to the right of the axes: it never covers a line or a bar."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8,
              **kwargs)


def plot_throughput(rows: list[dict], out_dir: str | Path) -> list[Path]:
    """Per GPU and head_dim measured at several lengths, one chart: useful TFLOP/s of each
    backend against the longest segment (full attention), the legend in the order of the
    lines at the right end; per GPU, full attention at head_dims measured at one length
    as one bar chart, and the window regime as another."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for device, dev_rows in _group(rows, _device).items():
        full = [r for r in dev_rows if r.get("regime") == "full" and _max_seqlen(r)]
        single = []
        for dim, dim_rows in sorted(_group(full, lambda r: r.get("head_dim", 0)).items()):
            if len({_max_seqlen(r) for r in dim_rows}) < 2:
                single += dim_rows
                continue
            written.append(_lines(dim_rows, out_dir / f"throughput-{_slug(device)}-d{dim}.png",
                                  _title(dim_rows, f"full attention, head_dim {dim}: useful "
                                                   "TFLOP/s by segment length")))
        if single:
            written.append(_bars(single, out_dir / f"full-{_slug(device)}.png",
                                 _title(single, "full attention, head_dims measured at one "
                                                "length: useful TFLOP/s")))
        window = [r for r in dev_rows if r.get("regime") == "window"]
        if window:
            written.append(_bars(window, out_dir / f"windows-{_slug(device)}.png",
                                 _title(window, "window regime (<= 64-token segments): useful "
                                                "TFLOP/s")))
    return written


def _lines(rows: list[dict], path: Path, title: str) -> Path:
    """One line per backend (its best row per length), over the lengths measured."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ends = []
    for i, (label, b_rows) in enumerate(_group(rows, row_label).items()):
        best: dict[int, float] = {}
        for r in b_rows:
            best[_max_seqlen(r)] = max(best.get(_max_seqlen(r), 0.0), r["tflops"])
        xs = sorted(best)
        (line,) = ax.plot(xs, [best[x] for x in xs], label=label, lw=1.6, ms=5,
                          **_style(label, i))
        ends.append((best[xs[-1]], line))
    ax.set_xscale("log", base=2)
    ax.minorticks_off()
    lengths = sorted({_max_seqlen(r) for r in rows})
    span = math.log2(lengths[-1] / lengths[0]) or 1.0
    labelled, last = [], 0.0  # (labels at least a tenth of the axis apart: none overlap)
    for n in lengths:
        if not labelled or math.log2(n / last) >= 0.1 * span:
            labelled.append(n)
            last = n
    ax.set_xticks(lengths, [str(n) if n in labelled else "" for n in lengths])
    ax.set_xlabel("longest segment (tokens)")
    ax.set_ylabel("useful TFLOP/s")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    ordered = [line for _, line in sorted(ends, key=lambda e: -e[0])]
    _legend_outside(ax, handles=ordered, title="fastest first (longest segment)",
                    title_fontsize=8)
    return _save(fig, path)


def plot_cross_gpu(rows: list[dict], out_dir: str | Path, backend: str) -> Path | None:
    """One backend's TFLOP/s per workload, one bar per GPU."""
    chosen = [r for r in rows if r["backend"] == backend]
    devices = list(_group(chosen, _device))
    # (the workloads measured on two GPUs or more: the others compare nothing)
    on = _group(chosen, lambda r: r["workload"])
    workloads = [w for w, w_rows in on.items() if len({_device(r) for r in w_rows}) > 1]
    if len(devices) < 2 or not workloads:
        return None
    fig, ax = plt.subplots(figsize=(min(16.0, max(6.0, 0.5 * len(workloads) * len(devices))),
                                    4))
    width = 0.8 / len(devices)
    for i, device in enumerate(devices):
        values = {r["workload"]: r["tflops"] for r in chosen if _device(r) == device}
        versions = next(r for r in chosen if _device(r) == device)
        ax.bar([j + i * width for j in range(len(workloads))],
               [values.get(w, 0.0) for w in workloads], width,
               color=_SPARE_COLOURS[i % len(_SPARE_COLOURS)] if i else "#1f77b4",
               label=f"{device}\n(torch {versions.get('torch')}, triton "
                     f"{versions.get('triton')}, {versions.get('date')})")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(workloads))], workloads,
                  rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("useful TFLOP/s")
    ax.set_title(f"{backend} across GPUs: useful TFLOP/s per workload", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    _legend_outside(ax)
    return _save(fig, Path(out_dir) / f"cross-gpu-{_slug(backend)}.png")


def plot_tuned_configs(config_dir: str | Path, out_dir: str | Path) -> Path | None:
    """The tuned files side by side when a folder holds several `<gpu>.yaml`: per bucket,
    the tuned kernel's TFLOP/s on each GPU (solid) and the best peer measured in the same
    run (hatched). None with fewer than two GPU files; ValueError where the folder is
    missing or a file does not validate."""
    from vitune.runtime.schema import bucket_provenance, load_config_file

    folder = Path(config_dir)
    if not folder.is_dir():
        raise ValueError(f"--configs {folder}: "
                         f"{'not a folder' if folder.exists() else 'no such folder'}")
    docs = [load_config_file(p) for p in sorted(folder.glob("*.yaml"))]
    docs = [d for d in docs if not d.get("interpreter")]
    if len(docs) < 2:
        return None
    buckets = list(dict.fromkeys(_bucket_label(b) for d in docs for b in d["buckets"]))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(buckets)), 4))
    width = 0.8 / len(docs)
    for i, doc in enumerate(docs):
        by_label = {_bucket_label(b): b for b in doc["buckets"]}
        xs = [j + i * width for j in range(len(buckets))]
        tuned = [by_label[b].get("tflops", 0.0) if b in by_label else 0.0 for b in buckets]
        peers = [max(by_label[b].get("peers", {}).values(), default=0.0) if b in by_label
                 else 0.0 for b in buckets]
        runs = [bucket_provenance(b) for b in doc["buckets"]]
        tritons = ", ".join(sorted({str(p["triton"]) for p in runs if p.get("triton")}))
        dates = sorted(str(p["date"]) for p in runs if p.get("date"))
        when = ("?" if not dates else dates[0] if dates[0] == dates[-1]
                else f"{dates[0]} to {dates[-1]}")
        device = doc.get("provenance", {}).get("device_name", doc["gpu"])
        bars = ax.bar(xs, tuned, width, color=_SPARE_COLOURS[i % len(_SPARE_COLOURS)]
                      if i else "#1f77b4",
                      label=f"{doc['gpu']} tuned\n({device}, triton {tritons or '?'}, "
                            f"{when})")
        ax.bar(xs, peers, width, fill=False, hatch="//", edgecolor=bars[0].get_facecolor(),
               label=f"{doc['gpu']} best peer")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(buckets))], buckets, rotation=30,
                  ha="right", fontsize=8)
    ax.set_ylabel("useful TFLOP/s")
    ax.set_title("tuned configs across GPUs: each GPU's own tuning run", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    _legend_outside(ax)
    return _save(fig, Path(out_dir) / "cross-gpu-tuned.png")


def _bucket_label(bucket: dict) -> str:
    return f"d{bucket['head_dim']} {bucket['dtype']} {bucket['regime']} L{bucket['seqlen']}"


def plot_convergence(storages: str | list[str], out_dir: str | Path) -> list[Path]:
    """Best-so-far TFLOP/s against trials that ran (configs the validity rules rejected
    cost nothing and are not counted), one chart per study name, one line per storage: pass
    a sampled search's storage and an exhaustive sweep's to see how fast each gets there."""
    import optuna

    from vitune.tuner.studies import trial_ran

    curves: dict[str, list[tuple[str, list[int], list[float], str]]] = {}
    for url in [storages] if isinstance(storages, str) else storages:
        store, summaries = _studies(url)
        for summary in summaries:
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
        ax.set_title(f"tuning convergence: {name}", fontsize=8)
        ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.2), fontsize=7)  # (below)
        ax.grid(alpha=0.3)
        written.append(_save(fig, Path(out_dir) / f"convergence-{_slug(name)}.png"))
    return written


def _studies(url: str) -> tuple:
    """(storage, its study summaries) to read; ValueError in one sentence where the storage
    cannot be opened (a missing SQLite or journal file, a malformed URL, no server)."""
    import optuna
    import sqlalchemy.exc

    from vitune.tuner.studies import open_storage

    if url.startswith("journal:") and not Path(url.removeprefix("journal:")).is_file():
        raise ValueError(f"{url}: no such journal file")
    try:
        store = open_storage(url, read_only=True)
        return store, optuna.get_all_study_summaries(store)
    except (ImportError, OSError, sqlalchemy.exc.SQLAlchemyError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ValueError(f"--storage {url} cannot be read: {reason}") from None


def _bars(rows: list[dict], path: Path, title: str) -> Path:
    """One group of bars per workload (e.g. each head dim's windows), one bar per backend,
    its value at its end; a backend's best row where it appears more than once in a
    workload."""
    workloads = _group(rows, lambda r: r["workload"])
    labels = list(_group(rows, row_label))
    fig, ax = plt.subplots(figsize=(7, 1.0 + 0.22 * len(workloads) * (len(labels) + 1)))
    height = 0.8 / max(len(labels), 1)
    top = max(r["tflops"] for r in rows)
    for i, label in enumerate(labels):
        rates = [max((r["tflops"] for r in rs if row_label(r) == label), default=0.0)
                 for rs in workloads.values()]
        style = _style(label, i)
        apart = "mfc" in style  # (rotary or out=: white hatching, seen on every colour)
        bars = ax.barh([w + i * height for w in range(len(workloads))], rates, height=height,
                       color=style["color"], label=label, hatch="///" if apart else None,
                       edgecolor="white" if apart else None, linewidth=0)
        ax.bar_label(bars, [f"{r:.1f}" if r else "" for r in rates], padding=2, fontsize=7)
    ax.set_yticks([w + 0.4 - height / 2 for w in range(len(workloads))], list(workloads))
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.12)  # (room for the value labels)
    ax.set_xlabel("useful TFLOP/s")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title, fontsize=9)
    _legend_outside(ax)
    return _save(fig, path)


def _group(rows: list[dict], key: Callable[[dict], Any]) -> dict[Any, list[dict]]:
    """Rows by key, in the order each key first appears."""
    groups: dict[Any, list[dict]] = defaultdict(list)
    for r in rows:
        groups[key(r)].append(r)
    return dict(groups)


def _save(fig, path: Path) -> Path:
    """The figure with everything drawn in it: the saved area grows to take titles and
    legends outside the axes, so none is clipped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return path
