"""`vitune tune --interpret`: the whole pipeline on the CPU, resume, SIGKILL, bad targets."""

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time

import optuna
import pytest
import torch

from vitune.cli import main
from vitune.runtime.schema import load_config_file

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="CPU lane")


def finished_trials(storage: str) -> dict[str, int]:
    """Trials that ran (the budget counts neither rule rejections nor repeats)."""
    from vitune.tuner.studies import trial_ran

    return {s.study_name: sum(trial_ran(t) for t in
                              optuna.load_study(study_name=s.study_name, storage=storage).trials)
            for s in optuna.get_all_study_summaries(storage)}


def test_tune_interpret_writes_a_labelled_valid_yaml_and_resumes(tmp_path):
    out = tmp_path / "cfg"
    assert main(["tune", "--interpret", "--trials", "2", "--out", str(out)]) == 0
    doc = load_config_file(out / "interpreter.yaml")
    assert doc["interpreter"] is True and doc["gpu"] == "interpreter"
    assert {(b["regime"], b["seqlen"]) for b in doc["buckets"]} == {("window", 16), ("full", 150)}
    for bucket in doc["buckets"]:
        assert bucket["config"] and bucket["tflops"] > 0 and bucket["trials"]["complete"] >= 1
    from vitune.kernels.vision_attn.identity import kernel_hash

    assert {b["provenance"]["kernel_hash"] for b in doc["buckets"]} == {kernel_hash()}
    storage = f"sqlite:///{out / 'studies.db'}"
    assert set(finished_trials(storage).values()) == {2}
    # what each bucket crowned is in its study too (scripts/compare_search.py reads it),
    # and in the file (read there for runs that predate that)
    from vitune.runtime.schema import bucket_config, bucket_key
    from vitune.tuner.studies import crowned_configs

    in_file = {bucket_key(b["head_dim"], b["dtype"], b["regime"], b["seqlen"]):
               bucket_config(b) for b in doc["buckets"]}
    assert crowned_configs(storage) == in_file
    (tmp_path / "none.db").touch()  # (a study-less storage: readers never create one)
    assert crowned_configs(f"sqlite:///{tmp_path / 'none.db'}", out / "interpreter.yaml") \
        == in_file

    # Resuming with a larger budget adds only the missing trials to each study.
    assert main(["tune", "--interpret", "--trials", "3", "--out", str(out),
                 "--preset", "tiny"]) == 0
    assert set(finished_trials(storage).values()) == {3}


def test_buckets_picks_the_buckets_to_tune(tmp_path):
    from vitune.bench.presets import TUNE_PRESETS, bucket_of

    window = next(bucket_of(w) for w in TUNE_PRESETS["tiny"] if bucket_of(w).regime == "window")
    assert main(["tune", "--interpret", "--trials", "1", "--out", str(tmp_path),
                 "--buckets", window.key]) == 0
    doc = load_config_file(tmp_path / "interpreter.yaml")
    assert [(b["regime"], b["seqlen"]) for b in doc["buckets"]] == [("window", window.seqlen)]


def test_rotary_tune_records_its_buckets_apart_and_the_runtime_takes_them(tmp_path):
    """`tune --rotary`: trials run with the rotary embedding fused (checked against the
    rotary reference), the buckets are written with rotary: true beside the plain ones, and
    a rotary call picks its config from them."""
    from vitune.runtime import selector
    from vitune.runtime.gpu import interpreter_identity

    full = "d32-float16-full-L150"
    assert main(["tune", "--interpret", "--trials", "1", "--out", str(tmp_path),
                 "--buckets", full]) == 0
    assert main(["tune", "--interpret", "--trials", "2", "--out", str(tmp_path), "--rotary",
                 "--buckets", f"{full}-rotary"]) == 0
    buckets = load_config_file(tmp_path / "interpreter.yaml")["buckets"]
    assert [b.get("rotary", False) for b in buckets] == [False, True]
    assert buckets[1]["trials"]["complete"] == 2 and buckets[1]["study"].endswith(
        f"{full}-rotary:" + buckets[1]["study"].split(":")[-1])
    selector.load_configs(tmp_path)
    try:
        gpu = interpreter_identity()
        rotary = selector.choose(gpu, 32, torch.float16, 150, rotary=True)
        assert rotary.rotary and rotary.config.to_dict() == buckets[1]["config"]
        assert not selector.choose(gpu, 32, torch.float16, 150).rotary
    finally:
        selector._user_paths.remove(tmp_path)
        selector.clear_cache()


def count_finished_readonly(db) -> int:
    """Finished trials, read without Optuna: an Optuna reader would also try to create the
    schema and race the tuner's own initialisation of a new database."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute(
                "SELECT count(*) FROM trials WHERE state IN ('COMPLETE', 'FAIL')").fetchone()[0]
    except sqlite3.OperationalError:  # no file or no tables yet, or locked for a moment
        return 0


def test_sigkill_keeps_every_finished_trial(tmp_path):
    out = tmp_path / "cfg"
    storage = f"sqlite:///{out / 'studies.db'}"
    cmd = [sys.executable, "-m", "vitune.cli", "tune", "--interpret", "--trials", "30",
           "--out", str(out), "--sampler", "random"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and count_finished_readonly(out / "studies.db") < 3:
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = finished_trials(storage)
    assert sum(before.values()) >= 3
    # Every trial finished before the kill is still there, and the run resumes from it.
    assert main(["tune", "--interpret", "--trials", "4", "--out", str(out),
                 "--sampler", "random"]) == 0
    after = finished_trials(storage)
    for name, count in before.items():
        assert after[name] >= max(count, 4)


def _worker_processes(parent: int) -> set[int]:
    """PIDs of the multiprocessing workers below `parent` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                with open(f"/proc/{stat}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(stat))
    found, todo = set(), [parent]
    while todo:
        for pid in children.get(todo.pop(), []):
            found.add(pid)
            todo.append(pid)
    return {pid for pid in found if _cmdline(pid).count("spawn_main")}


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


@contextlib.contextmanager
def tuner_running(tmp_path, *extra):
    """A `vitune tune --interpret` run in its own process group, once two trials finished:
    yields (process, its worker processes); killed at the end if still running."""
    out = tmp_path / "cfg"
    cmd = [sys.executable, "-m", "vitune.cli", "tune", "--interpret", "--trials", "30",
           "--out", str(out), "--sampler", "random", *extra]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and count_finished_readonly(out / "studies.db") < 2:
            time.sleep(0.5)
        yield proc, _worker_processes(proc.pid)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def assert_all_gone(pids: set[int]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_cmdline(p) for p in pids):
        time.sleep(0.2)
    assert not any(_cmdline(p) for p in pids), "a process outlived the tuner"


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_sigterm_stops_like_ctrl_c_and_leaves_no_worker_running(tmp_path):
    with tuner_running(tmp_path) as (proc, workers):
        assert workers, "the tuner runs its trials in worker processes"
        proc.send_signal(signal.SIGTERM)  # to the tuner alone, as `timeout` does
        proc.communicate(timeout=60)
        assert proc.returncode == 130
        assert_all_gone(workers)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_ctrl_c_in_a_terminal_stops_the_whole_team_quietly(tmp_path):
    """Ctrl-C reaches every process of the group (search processes, workers): the run stops
    with status 130, no process prints a traceback, none is left running."""
    with tuner_running(tmp_path, "--workers", "2") as (proc, workers):
        os.killpg(proc.pid, signal.SIGINT)  # as the terminal sends Ctrl-C
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130
        assert "Traceback" not in err, err
        assert_all_gone(workers)


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["tune", "--gpu", "h100"], "asked to tune for h100 but this machine has no CUDA GPU"),
     (["tune", "--interpret", "--gpu", "gb200"], "--interpret tunes the Triton interpreter"),
     (["tune", "--interpret", "--head-dim", "64", "--seqlens", "20"], "bf16"),
     (["tune", "--interpret", "--head-dim", "64"], "--head-dim and --seqlens go together"),
     (["tune", "--interpret", "--buckets", "d99-x"], "--buckets: d99-x not among")],
)
def test_bad_targets_exit_2_with_one_sentence(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_two_workers_share_one_study_in_a_journal_file(tmp_path):
    """Both search processes run trials on the one study for the whole time budget."""
    out = tmp_path / "cfg"
    journal = tmp_path / "studies.journal"
    assert main(["tune", "--interpret", "--head-dim", "32", "--dtype", "float16",
                 "--seqlens", "16", "8", "--trials", "1000", "--timeout", "30",
                 "--out", str(out), "--workers", "2", "--storage", f"journal:{journal}"]) == 0
    from vitune.tuner.studies import open_storage

    storage = open_storage(f"journal:{journal}")
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    done = [t for t in study.trials if t.state.is_finished()]
    assert {t.user_attrs.get("searcher") for t in done} == {0, 1}
    assert len({t.number for t in done}) == len(done)  # one shared sequence of trials
    assert load_config_file(out / "interpreter.yaml")["buckets"]



def test_two_workers_each_start_a_bucket_of_their_own(tmp_path):
    """Two buckets, two search processes: each takes one (the first trial that ran in a
    bucket is its searcher's), and both buckets are crowned into the file."""
    from vitune.tuner.studies import trial_ran

    out = tmp_path / "cfg"
    assert main(["tune", "--interpret", "--trials", "6", "--out", str(out),
                 "--workers", "2"]) == 0
    storage = f"sqlite:///{out / 'studies.db'}"
    first_searchers = set()
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        ran = sorted((t for t in study.trials if trial_ran(t)), key=lambda t: t.number)
        assert len(ran) >= 6
        first_searchers.add(ran[0].user_attrs["searcher"])
    assert first_searchers == {0, 1}
    assert len(load_config_file(out / "interpreter.yaml")["buckets"]) == 2

POSTGRES_URL = os.environ.get("VITUNE_TEST_POSTGRES_URL")


@pytest.mark.skipif(not POSTGRES_URL and not os.environ.get("CI"),
                    reason="set VITUNE_TEST_POSTGRES_URL (scripts/start_postgres.sh prints one)")
def test_two_workers_share_a_postgresql_study(tmp_path):
    assert POSTGRES_URL, "CI must start PostgreSQL (scripts/start_postgres.sh)"
    prefix = f"pgtest{os.getpid()}"
    assert main(["tune", "--interpret", "--trials", "6", "--out", str(tmp_path), "--workers",
                 "2", "--storage", POSTGRES_URL, "--study-name", prefix]) == 0
    names = [s.study_name for s in optuna.get_all_study_summaries(POSTGRES_URL)
             if s.study_name.startswith(prefix)]
    assert len(names) == 2
    for name in names:
        study = optuna.load_study(study_name=name, storage=POSTGRES_URL)
        assert len([t for t in study.trials if t.state.is_finished()]) >= 6


def test_gpu_mismatch_names_what_was_asked_and_found(monkeypatch, capsys):
    """A faked GB200 host: asking for h100 exits 2 naming both."""
    from vitune.runtime import gpu as gpu_module

    monkeypatch.setattr(gpu_module, "detect_gpu", lambda index=None: gpu_module.identify(
        "NVIDIA GB200", (10, 0)))
    with pytest.raises(SystemExit) as info:
        main(["tune", "--gpu", "h100"])
    assert info.value.code == 2
    assert "asked to tune for h100 but this machine has NVIDIA GB200 (gb200)" in (
        capsys.readouterr().err)


def test_share_chooses_how_search_processes_split_the_buckets(monkeypatch, tmp_path):
    from vitune.tuner import tune as tune_module

    seen = []
    monkeypatch.setattr(tune_module, "tune", lambda workloads, gpu, out, opts, *a, **k:
                        seen.append(opts.share) or [])
    for args, share in (([], "tail"), (["--share", "all"], "all")):
        # (the stand-in tunes nothing: a run that found no config exits 1)
        assert main(["tune", "--interpret", "--out", str(tmp_path), *args]) == 1
        assert seen.pop() == share
    with pytest.raises(SystemExit):
        main(["tune", "--interpret", "--share", "some"])


def test_more_search_processes_than_gpus_exits_naming_both(monkeypatch, capsys):
    """A faked host with one H100: --workers 2 exits 2 before starting any process; with
    CUDA_VISIBLE_DEVICES naming two devices it would take both."""
    from vitune.runtime import gpu as gpu_module
    from vitune.tuner import tune as tune_module

    monkeypatch.setattr(gpu_module, "detect_gpu", lambda index=None: gpu_module.identify(
        "NVIDIA H100 80GB HBM3", (9, 0)))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(tune_module, "tune", lambda *a, **k: pytest.fail("tune started"))
    with pytest.raises(SystemExit) as info:
        main(["tune", "--gpu", "h100", "--workers", "2"])
    assert info.value.code == 2
    assert "--workers 2 needs 2 GPUs (one per search process), 1 visible" in (
        capsys.readouterr().err)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    gpu = gpu_module.identify("NVIDIA H100 80GB HBM3", (9, 0))
    assert tune_module.worker_envs(gpu, 2) == [{"CUDA_VISIBLE_DEVICES": "2"},
                                               {"CUDA_VISIBLE_DEVICES": "5"}]
