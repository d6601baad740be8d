"""The tuner's compile processes never see the GPU (vitune.kernels.compile_only): they compile
for the run's compute capability on meta tensors, and the timing worker must find each
binary in Triton's cache, as if it had compiled the launch itself."""

import json
import random
from pathlib import Path

import pytest

from vitune.bench.workloads import Workload
from vitune.tuner.compile_pool import CompilePool, compiler_env
from vitune.tuner.trial import COMPILE_FOR, TrialRequest, compile_target

TINY = Workload("tiny full", (200, 136), heads=2, head_dim=72, dtype="float16")
TINY_WINDOWS = Workload("tiny windows", (64, 64, 40), heads=2, head_dim=72, dtype="float16")


def kernel_targets(cache: Path) -> dict[str, set[int]]:
    """kernel name -> the architectures of its binaries in a Triton cache directory."""
    found: dict[str, set[int]] = {}
    for meta in cache.glob("*/*.json"):
        data = json.loads(meta.read_text())
        if "target" in data and list(meta.parent.glob("*.cubin")):
            found.setdefault(data["name"], set()).add(data["target"]["arch"])
    return found


def test_compile_processes_build_hopper_and_blackwell_binaries_without_a_gpu(tmp_path):
    """In CI there is no GPU at all: a compile process (the GPU hidden, whatever the host
    has) builds the tile and window kernels for sm_90 and sm_100 into the Triton cache
    it shares with the timing worker."""
    from vitune.kernels.arch import ARCHS
    from vitune.kernels.vision_attn.space import default_config

    for capability, arch in (((9, 0), "hopper"), ((10, 0), "blackwell")):
        cache = tmp_path / arch
        configs = [default_config(w.head_dim, w.torch_dtype, ARCHS[arch], w.max_seqlen)
                   for w in (TINY, TINY_WINDOWS)]
        env = {"TRITON_INTERPRET": "0", "TRITON_CACHE_DIR": str(cache)}
        with CompilePool(1, capability, env) as pool:
            outcomes = pool.compile([TrialRequest(w, "triton", cfg.to_dict(), False)
                                     for w, cfg in zip((TINY, TINY_WINDOWS), configs,
                                                       strict=True)])
        assert [o.reason for o in outcomes if not o.ok] == []
        assert all(o.value["compile_s"] > 0 for o in outcomes)
        arch_number = capability[0] * 10 + capability[1]
        assert kernel_targets(cache) == {"vision_attn_fwd": {arch_number},
                                         "vision_attn_windows_fwd": {arch_number},
                                         "_increment": {arch_number}}  # (the warm-up's)


def test_a_compile_process_compiles_without_importing_sympy(tmp_path):
    """torch.empty_like on a meta tensor runs torch's Python decompositions, which import
    sympy: 2-3 s of CPU in every compile process's first compile on the H100 machine."""
    import os
    import subprocess
    import sys

    code = ("import sys; from vitune.tuner.trial import precompile, TrialRequest; "
            "from vitune.bench.workloads import Workload; "
            "from vitune.kernels.vision_attn.space import KernelConfig; "
            "w = Workload('t', (200, 136), heads=2, head_dim=64, dtype='float16'); "
            "precompile(TrialRequest(w, 'triton', KernelConfig(block_m=64, block_n=32, "
            "num_warps=4, num_stages=2).to_dict(), False)); print('sympy' in sys.modules)")
    env = {**os.environ, "TRITON_INTERPRET": "0", "CUDA_VISIBLE_DEVICES": "",
           COMPILE_FOR: "9.0", "TRITON_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
    assert list(tmp_path.glob("*/vision_attn_fwd.cubin"))  # (it did compile)


def test_a_compile_process_hides_the_gpu_and_names_its_target():
    env = compiler_env({"TRITON_CACHE_DIR": "/c", "CUDA_VISIBLE_DEVICES": "3"}, (10, 0))
    assert env == {"TRITON_CACHE_DIR": "/c", "CUDA_VISIBLE_DEVICES": "", COMPILE_FOR: "10.0"}


def test_a_compile_process_without_a_target_says_so(monkeypatch):
    monkeypatch.setenv(COMPILE_FOR, "9.0")
    assert compile_target() == (9, 0)
    for bad in ("", "sm90", "9"):
        monkeypatch.setenv(COMPILE_FOR, bad)
        with pytest.raises(ValueError, match=f"needs {COMPILE_FOR} set to the GPU's compute"):
            compile_target()


def test_the_pool_refuses_to_start_compile_processes_without_a_target():
    import contextlib

    from vitune.tuner.compile_pool import start_search_workers

    with contextlib.ExitStack() as stack, pytest.raises(ValueError, match="capability"):
        start_search_workers(stack, {}, jobs=2, timeout_s=60, capability=None)


@pytest.mark.gpu
def test_the_timing_worker_loads_every_binary_a_compile_process_built(tmp_path):
    """Tile kernel (pointer loads and descriptors, head dim 72: strides in units of 8) and
    window kernel: compiled blind, then run and checked in the timing worker, which
    compiles nothing of its own (same specialisation as its real launch)."""
    from vitune.runtime.gpu import detect_gpu
    from vitune.tuner.isolation import IsolatedWorker
    from vitune.tuner.plan import bucket_configs
    from vitune.tuner.trial import WARM_UP

    gpu = detect_gpu()
    cache = tmp_path / "cache"
    env = {"TRITON_CACHE_DIR": str(cache)}
    rng = random.Random(0)
    requests = []
    for w in (TINY, TINY_WINDOWS):
        valid = bucket_configs(w, gpu.arch)
        picked = rng.sample([c for c in valid if c.tma], 2) if w is TINY else []
        picked += rng.sample([c for c in valid if not c.tma], 2)
        requests += [TrialRequest(w, "triton", cfg.to_dict(), False, rep_ms=5) for cfg in picked]
    with CompilePool(3, gpu.capability, env) as pool:
        compiled = pool.compile(requests)
    assert [o.reason for o in compiled if not o.ok] == []
    before = sorted(p.parent.name for p in cache.glob("*/*.cubin"))
    with IsolatedWorker("vitune.tuner.trial:run_trial", env, WARM_UP) as worker:
        timed = [worker.call(r, 120) for r in requests]
    assert [o.reason for o in timed if not o.ok] == []
    assert all(o.value["tflops"] > 0 for o in timed)
    assert sorted(p.parent.name for p in cache.glob("*/*.cubin")) == before
