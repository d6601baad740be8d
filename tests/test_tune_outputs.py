"""What `vitune tune` writes: merges under a lock (runs crowning into one file at once lose
no bucket), a check of the output before any search, nothing written and a non-zero status
when no bucket found a config, and no rate that is not finite in the file."""

import multiprocessing as mp
from pathlib import Path

import pytest
import yaml

from vitune.bench.presets import bucket_of
from vitune.bench.workloads import Workload
from vitune.cli import main
from vitune.kernels.vision_attn.space import KernelConfig
from vitune.runtime.gpu import interpreter_identity
from vitune.runtime.schema import load_config_file
from vitune.tuner.crown import BucketResult, bucket_entry
from vitune.tuner.tune import check_output, save_results


def result(seqlen: int, tflops: float = 1.0, peers=None) -> BucketResult:
    w = Workload(f"w{seqlen}", (seqlen,), heads=1, head_dim=32, dtype="float16")
    return BucketResult(bucket_of(w), w, KernelConfig(), tflops, None, peers or {},
                        {"total": 1}, f"interpreter:{bucket_of(w).key}:x")


def _save_at_once(args) -> None:
    path, seqlen, barrier = args
    barrier.wait()
    save_results(Path(path), interpreter_identity(), [result(seqlen)])


def test_runs_crowning_into_one_file_at_once_lose_no_bucket(tmp_path):
    path = tmp_path / "interpreter.yaml"
    lengths = [200 + i for i in range(8)]
    ctx = mp.get_context("spawn")  # (no fork of a process that has torch loaded)
    with ctx.Manager() as manager:
        barrier = manager.Barrier(len(lengths))
        with ctx.Pool(len(lengths)) as pool:
            pool.map(_save_at_once, [(str(path), n, barrier) for n in lengths])
    saved = sorted(b["seqlen"] for b in load_config_file(path)["buckets"])
    assert saved == lengths
    assert not list(tmp_path.glob(".interpreter.yaml.*.tmp"))


def test_a_write_killed_midway_leaves_no_temporary_file_behind(tmp_path):
    path = tmp_path / "interpreter.yaml"
    (tmp_path / ".interpreter.yaml.abc123.tmp").write_text("half a fi")  # a killed write
    save_results(path, interpreter_identity(), [result(300)])
    assert not list(tmp_path.glob(".interpreter.yaml.*.tmp"))


@pytest.mark.parametrize("version", [1, 2])
def test_a_merge_keeps_each_older_buckets_own_provenance(tmp_path, version):
    """A bucket tuned before keeps the kernel hash, versions and date it was tuned with
    (from a version 1 file: that file's); the new bucket gets this run's; the file is
    written as version 2."""
    import triton

    from vitune.kernels.vision_attn.identity import kernel_hash
    from vitune.runtime.schema import write_config_file

    path = tmp_path / "interpreter.yaml"
    older = {"kernel_hash": "0123456789ab", "triton": "3.6.0", "torch": "2.11.0",
             "date": "2026-01-02"}
    entry = bucket_entry(result(200))
    if version == 1:
        doc = {"schema_version": 1, "gpu": "interpreter", "interpreter": True,
               "provenance": older, "buckets": [entry]}
    else:
        doc = {"schema_version": 2, "gpu": "interpreter", "interpreter": True,
               "buckets": [{**entry, "provenance": older}]}
    write_config_file(path, doc)
    save_results(path, interpreter_identity(), [result(300)])
    saved = yaml.safe_load(path.read_text())
    assert saved["schema_version"] == 2
    assert "triton" not in saved["provenance"]  # the file level names the card alone
    by_length = {b["seqlen"]: b["provenance"] for b in saved["buckets"]}
    assert by_length[200] == older
    assert by_length[300]["kernel_hash"] == kernel_hash()
    assert by_length[300]["triton"] == triton.__version__


def test_rates_that_are_not_finite_never_reach_the_file():
    entry = bucket_entry(result(300, tflops=1.5, peers={"varlen_attn": float("inf"),
                                                        "sdpa-cudnn": 2.0}))
    assert entry["peers"] == {"sdpa-cudnn": 2.0}
    assert "tflops" not in bucket_entry(result(300, tflops=float("nan")))


@pytest.mark.parametrize("make,message", [
    (lambda out: (out / "interpreter.yaml").write_text("schema_version: 9\n"),
     "the output file cannot be merged into"),
    (lambda out: (out / "interpreter.yaml").write_text(yaml.safe_dump(
        {"schema_version": 1, "gpu": "h100", "interpreter": False, "buckets": []})),
     "holds GPU results"),
])
def test_an_output_that_cannot_take_the_results_stops_the_run_before_it_searches(
        tmp_path, make, message, capsys):
    out = tmp_path / "cfg"
    out.mkdir()
    make(out)
    with pytest.raises(ValueError, match=message):
        check_output(out, interpreter_identity())
    with pytest.raises(SystemExit) as info:
        main(["tune", "--interpret", "--trials", "1", "--out", str(out)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (out / "studies.db").exists()  # nothing was searched


def test_an_out_that_is_a_file_is_a_usage_error(tmp_path, capsys):
    out = tmp_path / "cfg"
    out.write_text("")
    with pytest.raises(SystemExit) as info:
        main(["tune", "--interpret", "--trials", "1", "--out", str(out)])
    assert info.value.code == 2 and "is not a folder" in capsys.readouterr().err


def test_a_run_where_every_trial_fails_exits_1_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "cfg"
    status = main(["tune", "--interpret", "--trials", "2", "--trial-timeout", "0.001",
                   "--buckets", "d32-float16-full-L150", "--out", str(out)])
    assert status == 1
    assert "no bucket found a config" in capsys.readouterr().err
    assert not (out / "interpreter.yaml").exists()


def _create_at_once(args) -> str:
    url, barrier = args
    import optuna

    from vitune.tuner.studies import open_storage

    barrier.wait()
    try:
        optuna.create_study(storage=open_storage(url), study_name="s", load_if_exists=True)
    except Exception as exc:  # (the race's errors are what this test is about)
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def test_runs_starting_at_once_on_a_fresh_sqlite_storage_both_open_it(tmp_path):
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(3) as pool:
        for attempt in range(3):
            barrier = manager.Barrier(3)
            url = f"sqlite:///{tmp_path / f'fresh{attempt}.db'}"
            assert pool.map(_create_at_once, [(url, barrier)] * 3) == ["ok"] * 3


@pytest.mark.parametrize("url,message", [
    ("sqlite:////no/such/folder/studies.db", "No such file or directory"),
    ("nosuchdriver://x", "Can't load plugin"),
])
def test_a_storage_that_cannot_be_opened_is_one_sentence_and_status_2(tmp_path, url, message,
                                                                     capsys):
    with pytest.raises(SystemExit) as info:
        main(["tune", "--interpret", "--trials", "1", "--out", str(tmp_path), "--storage",
              url])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    assert f"--storage {url} cannot be opened" in err and message in err


def test_postgresql_urls_take_the_installed_driver(monkeypatch):
    import importlib.util

    from vitune.tuner.studies import storage_url

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "psycopg" else real(name, *a))
    pytest.importorskip("psycopg2")
    assert storage_url("postgresql://u@localhost/db") == "postgresql+psycopg2://u@localhost/db"
    assert storage_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert storage_url("sqlite:///x.db") == "sqlite:///x.db"


def test_dtype_applies_to_a_preset_as_the_interpreter_advice_says(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["tune", "--interpret", "--preset", "qwen2.5-vl", "--out", str(tmp_path)])
    assert info.value.code == 2 and "use --dtype float16" in capsys.readouterr().err
    assert main(["tune", "--interpret", "--preset", "tiny", "--dtype", "float32", "--trials",
                 "1", "--buckets", "d32-float32-full-L150", "--out", str(tmp_path)]) == 0
    buckets = load_config_file(tmp_path / "interpreter.yaml")["buckets"]
    assert [(b["dtype"], b["seqlen"]) for b in buckets] == [("float32", 150)]


def test_trials_a_killed_run_left_running_count_nowhere():
    import optuna

    from vitune.tuner.studies import trial_counts

    study = optuna.create_study(direction="maximize")
    for value in (1.0, 2.0):
        study.tell(study.ask(), value)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    study.ask()  # left RUNNING, as by a process killed mid-trial
    counts = trial_counts(study.get_trials(deepcopy=False))
    assert counts == {"total": 3, "ran": 3, "complete": 2, "failed": 1, "rejected": 0,
                      "repeats": 0}


def test_trials_of_a_search_process_that_died_are_released_not_counted():
    """A member killed mid-trial left its trials RUNNING: they held their place in the
    budget until stale, so its bucket was crowned short (38 of 40)."""
    import optuna

    from vitune.tuner.studies import release_orphans, trial_ran

    study = optuna.create_study(direction="maximize")
    for searcher in (1, 1, 2):
        study.ask().set_user_attr("searcher", searcher)
    study.tell(study.ask(), 1.0)
    assert release_orphans(study, 1, "search process 1 exited (-9)") == 2
    trials = study.get_trials(deepcopy=False)
    released = [t for t in trials if t.user_attrs.get("reason", "").startswith("search")]
    assert [t.state for t in released] == [optuna.trial.TrialState.FAIL] * 2
    assert not any(trial_ran(t) for t in released)
    assert trials[2].state == optuna.trial.TrialState.RUNNING  # another process's, alive


def test_a_tune_without_out_serves_every_later_process(tmp_path, monkeypatch):
    """The tune -> use loop: `vitune tune` writes where the runtime looks, so a process
    started afterwards uses the tuned file with no variable set."""
    import os
    import subprocess
    import sys

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert main(["tune", "--interpret", "--trials", "1", "--buckets",
                 "d32-float16-full-L150"]) == 0
    tuned = tmp_path / "vitune" / "interpreter.yaml"
    assert tuned.exists() and (tmp_path / "vitune" / "studies.db").exists()
    code = ("import torch, vitune\n"
            "from vitune.runtime.gpu import interpreter_identity\n"
            "from vitune.runtime.selector import choose\n"
            "q = torch.randn(150, 1, 32, dtype=torch.float16)\n"
            "cu = torch.tensor([0, 150], dtype=torch.int32)\n"
            "vitune.vision_attention(q, q, q, cu, 150)\n"
            "c = choose(interpreter_identity(), 32, torch.float16, 150)\n"
            "print(c.level, c.path)")
    env = {k: v for k, v in os.environ.items() if k != "VITUNE_CONFIG_DIR"}
    env.update(XDG_CONFIG_HOME=str(tmp_path), TRITON_INTERPRET="1")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.stdout.strip() == f"exact GPU {tuned}", run.stderr[-2000:]


def test_the_file_records_the_fastest_backend_with_and_without_out():
    """Peers timed twice in the crown: as they are, and with their result copied into a
    given out= (what vision_attention does for them); the kernel writes out directly."""
    r = result(4096, tflops=330.0, peers={"sdpa-cudnn": 363.0, "sglang-style-fixed": 400.0})
    r.peers_with_out.update({"sdpa-cudnn": 327.0})
    entry = bucket_entry(r)
    assert entry["backend"] == "sdpa_cudnn"  # (sglang-style is no backend the runtime runs)
    assert entry["backend_with_out"] == "triton"
    assert entry["peers_with_out"] == {"sdpa-cudnn": 327.0}
    assert "backend_with_out" not in bucket_entry(result(4096, 330.0))  # (not measured)
