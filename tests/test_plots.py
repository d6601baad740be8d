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
    assert sorted(p.name for p in written) == ["throughput-gpu-a.png", "throughput-gpu-b.png",
                                               "windows-gpu-a.png", "windows-gpu-b.png"]
    assert all(p.stat().st_size > 5000 for p in written)
    assert plot_cross_gpu(rows, tmp_path, "sdpa-cudnn").name == "cross-gpu-sdpa-cudnn.png"
    assert plot_cross_gpu(rows_for("GPU A", 1.0), tmp_path, "sdpa-cudnn") is None  # one GPU


def test_convergence_from_a_study_and_the_cli(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    study = optuna.create_study(storage=storage, study_name="h100:d80-bfloat16-full-L4096:x",
                                direction="maximize")
    for value in (1.0, 3.0, 2.0):
        study.add_trial(optuna.trial.create_trial(value=value))
    assert [p.name for p in plot_convergence(storage, tmp_path)] == [
        "convergence-h100-d80-bfloat16-full-l4096-x.png"]

    results = tmp_path / "bench.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows_for("GPU A", 1.0)))
    assert len(read_rows([results])) == 8
    assert main(["plot", "--results", str(results), "--storage", storage,
                 "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "throughput-gpu-a.png").exists()


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
