"""`vitune plot`: charts from bench rows and from a study storage, titled with the GPU."""

import json
from pathlib import Path

import optuna

from vitune.cli import main
from vitune.plots import plot_convergence, plot_cross_gpu, plot_throughput, read_rows


def rows_for(device, scale):
    env = {"device_name": device, "torch": "2.x", "triton": "3.x", "date": "2026-11-27",
           "status": "ok"}
    rows = []
    for backend in ("vitune-default", "sdpa-cudnn"):
        for length in (1024, 4096, 16384):
            rows.append({"workload": f"1x{length} d80", "backend": backend, "regime": "full",
                         "head_dim": 80, "max_seqlen": length, "tflops": scale * length / 100,
                         **env})
        rows.append({"workload": "windows", "backend": backend, "regime": "window",
                     "head_dim": 80, "max_seqlen": 64, "tflops": scale * 40, **env})
    return rows


def test_throughput_window_and_cross_gpu_charts(tmp_path):
    rows = rows_for("GPU A", 1.0) + rows_for("GPU B", 1.5)
    written = plot_throughput(rows, tmp_path)
    assert sorted(p.name for p in written) == ["throughput-gpu-a-d80.png",
                                               "throughput-gpu-b-d80.png",
                                               "windows-gpu-a.png", "windows-gpu-b.png"]
    assert all(p.stat().st_size > 5000 for p in written)
    assert plot_cross_gpu(rows, tmp_path, "sdpa-cudnn").name == "cross-gpu-sdpa-cudnn.png"
    assert plot_cross_gpu(rows_for("GPU A", 1.0), tmp_path, "sdpa-cudnn") is None  # one GPU


def many_backends(device: str) -> list[dict]:
    """Ten backends over two head dims (one at several lengths, one at a single length),
    with and without rotary, and windows: the charts' crowded case."""
    from vitune.cli import BACKENDS

    env = {"device_name": device, "torch": "2.x", "triton": "3.x", "date": "2026-11-27",
           "status": "ok"}
    rows = []
    for i, backend in enumerate(BACKENDS):
        for length in (256, 1024, 4096, 5476, 16384):
            rows.append({"workload": f"{16384 // length}x{length} d80", "backend": backend,
                         "regime": "full", "head_dim": 80, "max_seqlen": length,
                         "tflops": 40.0 * i + length / 100, **env})
        rows.append({"workload": "1x4096 d128", "backend": backend, "regime": "full",
                     "head_dim": 128, "max_seqlen": 4096, "tflops": 50.0 * i, **env})
        for rotary in (False, True):
            rows.append({"workload": "windows d80", "backend": backend, "regime": "window",
                         "head_dim": 80, "max_seqlen": 64, "rotary": rotary,
                         "tflops": 5.0 * i + rotary, **env})
    return rows


def test_legends_and_titles_stay_clear_of_the_data(tmp_path, monkeypatch):
    """Every legend sits outside its axes and every title above them, all inside the saved
    image (nothing clipped); every line of a chart has a style of its own; one chart per
    head_dim measured at several lengths, one for those measured at one."""
    import matplotlib.pyplot as plt
    from matplotlib.image import imread

    from vitune import plots

    checked = []
    save = plots._save

    def checking_save(fig, path):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        drawn = fig.get_tightbbox(renderer)  # (inches) every artist: titles, legends, labels
        for ax in fig.axes:
            area = ax.get_window_extent(renderer)
            legend = ax.get_legend()
            assert legend is not None, path
            box = legend.get_window_extent(renderer)
            assert not box.overlaps(area), f"{path.name}: the legend covers the axes"
            title = ax.title.get_window_extent(renderer)
            assert title.y0 >= area.y1 - 1, f"{path.name}: the title runs into the axes"
            styles = [(line.get_color(), line.get_marker(), line.get_linestyle(),
                       line.get_markerfacecolor()) for line in ax.get_lines()]
            assert len(set(styles)) == len(styles), f"{path.name}: two lines look alike"
        checked.append(path.name)
        saved = save(fig, path)
        height, width = imread(saved).shape[:2]  # nothing drawn was cut off the image
        assert width >= drawn.width * 110 - 2 and height >= drawn.height * 110 - 2, path.name
        return saved

    monkeypatch.setattr(plots, "_save", checking_save)
    rows = many_backends("GPU A") + many_backends("GPU B")
    plot_throughput(rows, tmp_path)
    plot_cross_gpu(rows, tmp_path, "sdpa-cudnn")
    assert sorted(checked) == ["cross-gpu-sdpa-cudnn.png", "full-gpu-a.png", "full-gpu-b.png",
                               "throughput-gpu-a-d80.png", "throughput-gpu-b-d80.png",
                               "windows-gpu-a.png", "windows-gpu-b.png"]
    assert not plt.get_fignums()  # (every figure closed)


def test_convergence_from_a_study_and_the_cli(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    study = optuna.create_study(storage=storage, study_name="h100:d80-bfloat16-full-L4096:x",
                                direction="maximize")
    for value in (1.0, 3.0, 2.0):
        study.add_trial(optuna.trial.create_trial(value=value))
    assert [p.name for p in plot_convergence([storage, storage], tmp_path)] == [
        "convergence-h100-d80-bfloat16-full-l4096-x.png"]

    results = tmp_path / "bench.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows_for("GPU A", 1.0)))
    assert len(read_rows([results])) == 8
    assert main(["plot", "--results", str(results), "--storage", storage,
                 "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "throughput-gpu-a-d80.png").exists()


def test_cross_gpu_chart_from_tuned_files(tmp_path):
    """Two GPUs' tuned files side by side; one file alone draws nothing."""
    import shutil

    import yaml

    from vitune.plots import plot_tuned_configs

    shipped = Path(__file__).resolve().parent.parent / "vitune" / "configs" / "h100.yaml"
    shutil.copy(shipped, tmp_path / "h100.yaml")
    assert plot_tuned_configs(tmp_path, tmp_path / "out") is None
    doc = yaml.safe_load(shipped.read_text())
    doc["gpu"] = "h200"
    doc["provenance"]["device_name"] = "NVIDIA H200"
    for bucket in doc["buckets"][1:]:  # a bucket the other GPU has not tuned stays at 0
        bucket["tflops"] *= 1.1
    doc["buckets"] = doc["buckets"][1:]
    (tmp_path / "h200.yaml").write_text(yaml.safe_dump(doc))
    path = plot_tuned_configs(tmp_path, tmp_path / "out")
    assert path.name == "cross-gpu-tuned.png" and path.stat().st_size > 5000
    assert main(["plot", "--configs", str(tmp_path), "--out", str(tmp_path / "cli")]) == 0
