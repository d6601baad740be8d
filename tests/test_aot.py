"""Ahead-of-time compiles for Hopper (sm_90) and Blackwell (sm_100) on a machine without
either: the defaults compile, get the architecture's matrix instructions, and take no more
shared memory than the validity rules estimate (so the rules never admit a config that
cannot launch). Runs in a subprocess: the test lane imports the interpreted kernel."""

import json
import os
import subprocess
import sys

import pytest
import torch

SCRIPT = """
import json, torch
from vitune.kernels.arch import ARCHS
from vitune.kernels.vision_attn.aot import compile_for
from vitune.kernels.vision_attn.space import default_config, estimate_smem_bytes
rows = []
for arch, cap in (("hopper", 90), ("blackwell", 100)):
    for mean in (64, 4096):
        cfg = default_config(80, torch.bfloat16, ARCHS[arch], mean)
        info = compile_for(cfg, 80, torch.bfloat16, cap)
        rows.append(dict(arch=arch, cfg=cfg.short(), block_m=cfg.block_m, warps=cfg.num_warps,
                         shared=info.shared_bytes, mma=info.matrix_instructions,
                         tma=cfg.tma, tma_loads=info.tma_loads,
                         estimate=estimate_smem_bytes(cfg, 80, torch.bfloat16),
                         budget=ARCHS[arch].smem_per_block))
from vitune.kernels.vision_attn.space import KernelConfig
window = KernelConfig(block_m=64, block_n=32, num_warps=2, num_stages=2, heads_fastest=True)
loads = {f"d{d}-unit{u}": compile_for(window, d, torch.bfloat16, 90, unit=u).vector_loads
         for d, u in ((80, 1), (72, 1), (72, None))}
four = KernelConfig(block_m=64, block_n=32, num_warps=4, num_stages=2, heads_fastest=True)
paths = {w: compile_for(c, 72, torch.bfloat16, 90).matrix_instructions
         for w, c in (("2 warps", window), ("4 warps", four))}
print(json.dumps({"rows": rows, "vector_loads": loads, "paths": paths}))
"""


def _can_compile_ahead() -> bool:
    try:
        from triton.backends.compiler import GPUTarget  # noqa: F401
        from triton.compiler import ASTSource  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _can_compile_ahead(), reason="this triton has no ahead-of-time API")
@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU lane (the GPU lane runs them)")
def test_defaults_compile_for_hopper_and_blackwell_within_the_estimate():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    rows, loads = result["rows"], result["vector_loads"]
    # The premise of the head_dim 72/88 rule (space.needs_aligned_strides): 2 warps stay off
    # Hopper's wgmma path, where the measured miscompile lives; 4 warps take it.
    assert result["paths"] == {"2 warps": "mma", "4 warps": "wgmma"}
    assert len(rows) == 4
    for r in rows:
        assert 0 < r["shared"] <= min(r["estimate"], r["budget"]), r
        # Hopper's warpgroup MMA needs 4+ warps and 64+ rows; Blackwell uses tcgen05 there.
        if r["warps"] >= 4 and r["block_m"] >= 64:
            assert r["mma"] == {"hopper": "wgmma", "blackwell": "tcgen05"}[r["arch"]], r
        # A config with descriptors really copies through the tensor-memory accelerator.
        assert (r["tma_loads"] > 0) == r["tma"], r
    assert any(r["tma"] for r in rows)  # the full-attention defaults take descriptors
    # Rows of 72 elements (fused qkv strides 72, 3 * 16 * 72) get 16-byte loads only when
    # the launcher passes strides in units of 8 (the default, unit=None), as 80 does.
    assert loads["d80-unit1"] > 0 and loads["d72-unit1"] == 0
    assert loads["d72-unitNone"] == loads["d80-unit1"]


@pytest.mark.skipif(not _can_compile_ahead(), reason="this triton has no ahead-of-time API")
@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU lane (the GPU lane runs them)")
def test_compile_check_can_take_the_window_kernel_alone():
    """`vitune compile-check --kernel windows`: only window-kernel configs, and they compile
    for Hopper (here two of them, in a child process without the interpreter)."""
    from vitune.kernels.arch import HOPPER
    from vitune.kernels.vision_attn.aot import CompiledInfo, compile_space

    results = list(compile_space(HOPPER, 80, torch.bfloat16, jobs=1, limit=2,
                                 kernel="windows"))
    assert len(results) == 2
    for cfg, info in results:
        assert cfg.windows and isinstance(info, CompiledInfo), info
        assert 0 < info.shared_bytes <= HOPPER.smem_per_block
