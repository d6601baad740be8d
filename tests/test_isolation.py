"""A crashing, hanging or failing trial costs one trial, never the study."""

import pytest

from vitune.tuner.isolation import IsolatedWorker


def test_worker_survives_crash_hang_and_exception():
    with IsolatedWorker("worker_targets:misbehave", {"TRITON_INTERPRET": "1"}) as worker:
        first = worker.call("ok", timeout_s=60)
        assert first.ok and first.value["interpret"] == "1"
        again = worker.call("ok", timeout_s=60)
        assert again.value["pid"] == first.value["pid"]  # kept warm between trials

        crashed = worker.call("crash", timeout_s=60)
        assert not crashed.ok and "died (exit code 3)" in crashed.reason
        hung = worker.call("hang", timeout_s=2)
        assert not hung.ok and "timed out after 2 s" in hung.reason
        failed = worker.call("raise", timeout_s=60)
        assert not failed.ok and failed.reason == "ValueError: wrong result: relative error 1.0"

        after = worker.call("ok", timeout_s=60)
        assert after.ok and after.value["pid"] != first.value["pid"]  # a fresh worker


def test_send_and_receive_split_a_call_and_stop_then_close_reaps_the_process():
    """The search loop hands a worker its next config and writes the last result while it
    runs; a pool stops all its processes, then reaps them."""
    with IsolatedWorker("worker_targets:misbehave", {"TRITON_INTERPRET": "1"}) as worker:
        worker.send("ok")
        first = worker.receive(timeout_s=60)
        assert first.ok and first.value["interpret"] == "1"
        worker.send("hang")
        assert worker.receive(timeout_s=1).reason == "timed out after 1 s"
        worker.send("ok")  # (a fresh worker)
        assert worker.receive(timeout_s=60).value["pid"] != first.value["pid"]
        worker.send("ok")
        with pytest.raises(RuntimeError, match="not been received"):
            worker.send("ok")  # (one payload at a time)
        worker.receive(timeout_s=60)
        process = worker._proc  # noqa: SLF001
        worker.stop()
        worker.close()
        assert not process.is_alive() and process.exitcode == -9


def test_start_runs_the_warm_up_before_the_first_call(tmp_path):
    """start() spawns the process and runs its warm-up at once (torch, CUDA in a trial
    worker), so it overlaps the caller's work instead of delaying the first trial."""
    import time

    mark = tmp_path / "warm"
    with IsolatedWorker("worker_targets:warmed_at", {"WARM_MARK": str(mark)},
                        warm_up="worker_targets:warm") as worker:
        worker.start()
        deadline = time.time() + 60
        while not mark.exists() and time.time() < deadline:  # no call made yet
            time.sleep(0.1)
        assert mark.exists()
        warmed = worker.call(None, timeout_s=60)
        assert warmed.ok and warmed.value is not None
        assert mark.read_text() == str(worker._proc.pid)  # noqa: SLF001 (the same process)
    with IsolatedWorker("worker_targets:warmed_at") as cold:
        assert cold.call(None, timeout_s=60).value is None


@pytest.mark.gpu
def test_the_peer_libraries_warm_up_on_a_gpu():
    from vitune.bench.backends import warm_up_peers

    warm_up_peers()  # (a peer that cannot run is skipped: this must not raise)


@pytest.mark.gpu
def test_a_workers_warm_up_starts_cuda_and_runs_a_triton_kernel():
    import torch

    from vitune.kernels.touch import touch_gpu
    from vitune.tuner.trial import warm_up

    warm_up()
    assert torch.cuda.is_initialized()
    assert touch_gpu() == 1  # (the kernel read the zero and wrote one)


def test_only_the_peer_worker_warms_the_peer_libraries_up(monkeypatch):
    """Only the process that times peers pays for loading their libraries (a crown's first
    peers took seconds more than later ones), as it starts: not the trial workers (it held
    a run's first trial up) nor the compile processes."""
    from vitune.bench import backends as peers
    from vitune.kernels import compile_only, touch
    from vitune.tuner import trial

    called = []
    monkeypatch.setattr(trial, "_start", lambda: True)
    monkeypatch.setenv(trial.COMPILE_FOR, "9.0")
    monkeypatch.setattr(compile_only, "compile_only_for", lambda capability: None)
    monkeypatch.setattr(touch, "compile_touch", lambda: None)
    monkeypatch.setattr(peers, "warm_up_peers", lambda: called.append("peers"))
    monkeypatch.setattr("os.nice", lambda increment: None)  # (this test process stays)
    trial.warm_up_compiler()
    trial.warm_up()
    assert called == []
    trial.warm_up_peers()
    assert called == ["peers"]


def test_a_compiled_kernel_worker_is_forked_with_its_own_environment(monkeypatch, tmp_path):
    """Without the interpreter a worker comes from the fork server (torch imported there
    once), yet gets its own environment and PYTHONPATH, and a crash still costs one call."""
    import os

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    env = {"CUDA_VISIBLE_DEVICES": "7", "PYTHONPATH": str(tmp_path)}
    with IsolatedWorker("worker_targets:environment_seen", env) as worker:
        assert worker._ctx.get_start_method() == "forkserver"  # noqa: SLF001
        seen = worker.call(["CUDA_VISIBLE_DEVICES", "TRITON_INTERPRET"], 120).value
        assert seen["env"] == {"CUDA_VISIBLE_DEVICES": "7", "TRITON_INTERPRET": None}
        assert str(tmp_path) in seen["path"] and seen["ppid"] != os.getpid()
        assert "CUDA_VISIBLE_DEVICES" not in os.environ or \
            os.environ["CUDA_VISIBLE_DEVICES"] != "7"  # this process's is left alone
    with IsolatedWorker("worker_targets:misbehave", {}) as worker:
        assert not worker.call("crash", 120).ok
        assert worker.call("ok", 120).ok  # a fresh fork
    assert IsolatedWorker("worker_targets:echo", {"TRITON_INTERPRET": "1"}) \
        ._ctx.get_start_method() == "spawn"  # noqa: SLF001


def test_a_search_process_forks_its_first_workers_itself():
    """fork_first: a single-threaded process (a search process fresh from the fork server)
    forks its first worker itself; once it has threads, replacements and new workers come
    from the fork server (forking a threaded process risks a deadlock)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import os, threading, time\n"
            "from vitune.tuner.isolation import IsolatedWorker\n"
            "w = IsolatedWorker('worker_targets:misbehave', {}, 'worker_targets:warm', "
            "fork_first=True)\n"
            "first = w.call('ok', 120).value\n"
            "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
            "assert not w.call('crash', 120).ok\n"
            "again = w.call('ok', 120).value\n"
            "late = IsolatedWorker('worker_targets:misbehave', {}, 'worker_targets:warm', "
            "fork_first=True)\n"
            "third = late.call('ok', 120).value\n"
            "print([v['ppid'] == os.getpid() for v in (first, again, third)])\n"
            "w.close(); late.close()\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent),
                                         env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-2] == "[True, False, False]"


def test_ctrl_c_is_left_to_the_parent():
    """A worker ignores SIGINT (Ctrl-C reaches the whole process group; the parent stops
    its workers), so it neither dies mid-trial nor prints a traceback of its own."""
    import os
    import signal
    import time

    with IsolatedWorker("worker_targets:echo", {"TRITON_INTERPRET": "1"}) as worker:
        pid = worker.call(1, timeout_s=60).value["pid"]
        os.kill(pid, signal.SIGINT)
        time.sleep(0.5)
        again = worker.call(2, timeout_s=60)
        assert again.ok and again.value == {"pid": pid, "payload": 2}


def test_a_worker_whose_parent_went_away_mid_call_exits_quietly():
    """A stopped search process leaves its worker finishing a trial: the worker's answer
    finds no one to read it, and it exits without a traceback."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import os, time\n"
            "from vitune.tuner.isolation import IsolatedWorker\n"
            "w = IsolatedWorker('worker_targets:misbehave', {'TRITON_INTERPRET': '1'})\n"
            "w.start(); w._conn.send('slow'); time.sleep(1); os._exit(0)\n")
    tests = str(Path(__file__).resolve().parent)
    # (run() returns once the orphaned worker, which holds the stderr pipe too, has exited)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": tests}, timeout=120)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr


def test_compile_processes_run_at_a_lower_priority():
    """Compiles yield the CPU to the timing worker and the search loop. (The warm-up's
    first compile is real: for sm_90, with no GPU visible.)"""
    import os
    import subprocess
    import sys

    from vitune.tuner.trial import COMPILE_FOR, COMPILER_NICENESS

    code = ("import os; before = os.nice(0); from vitune.tuner.trial import warm_up_compiler; "
            "warm_up_compiler(); print(os.nice(0) - before)")
    env = {**os.environ, "TRITON_INTERPRET": "0", "CUDA_VISIBLE_DEVICES": "", COMPILE_FOR: "9.0"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True)
    assert int(out.stdout.strip().splitlines()[-1]) == COMPILER_NICENESS
