"""torch.compile(fullgraph=True) traces vision_attention as one custom op (CPU lane: the
aot_eager backend, which needs no C++ toolchain; GPU lane: inductor and CUDA graphs)."""

import pytest
import torch
from conftest import make_packed

from vitune import reference_attention, vision_attention
from vitune.kernels.vision_attn.launch import kernel_is_interpreted
from vitune.kernels.vision_attn.reference import TOLERANCE, relative_error


@pytest.mark.skipif(torch.cuda.is_available() or not kernel_is_interpreted(), reason="CPU lane")
def test_fullgraph_compile_on_the_interpreter():
    q, k, v, cu = make_packed([9, 0, 14], heads=2, head_dim=32, dtype=torch.float32)

    def block(q, k, v, cu):
        return vision_attention(q, k, v, cu, max_seqlen=14) * 2.0

    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    out = compiled(q, k, v, cu)
    assert relative_error(out / 2.0, reference_attention(q, k, v, cu)) < TOLERANCE[torch.float32]
    torch._dynamo.reset()


def test_custom_op_launches_every_field_of_the_config(monkeypatch):
    """The op passes plain fields; none may be dropped on the way (e.g. tma)."""
    from vitune.kernels.vision_attn.space import KernelConfig
    from vitune.runtime import ops

    launched = []
    monkeypatch.setattr(ops, "launch_vision_attention",
                        lambda q, k, v, out, cu, scale, cfg, **kw: launched.append(cfg) or out)
    q = torch.randn(4, 2, 32)
    for cfg in (KernelConfig(64, 32, 4, 3, False, True, True), KernelConfig()):
        ops.call_op(q, q, q, None, None, 0.5, cfg)
    assert launched == [KernelConfig(64, 32, 4, 3, False, True, True), KernelConfig()]


def test_custom_op_checks_base_addresses_when_it_runs(monkeypatch):
    """Under torch.compile the config is chosen at trace time, without addresses: the op
    turns a split wgmma config padded when a base is not 16-byte aligned."""
    from vitune.kernels.arch import HOPPER
    from vitune.kernels.vision_attn.space import KernelConfig
    from vitune.runtime import ops

    launched = []
    monkeypatch.setattr(ops, "launch_vision_attention",
                        lambda q, k, v, out, cu, scale, cfg, **kw: launched.append(cfg) or out)
    monkeypatch.setattr(ops, "device_arch", lambda device: HOPPER)
    flat = torch.randn(2 * 80 + 4).to(torch.float16)
    split = KernelConfig(128, 64, 4, 3, True, False, True)
    for offset in (0, 4):
        q = flat[offset:offset + 2 * 80].view(1, 2, 80)
        ops.call_op(q, q, q, None, None, 0.5, split)
    assert launched == [split, KernelConfig(128, 64, 4, 3, False, False, False)]


@pytest.mark.gpu
def test_compile_and_cuda_graph_on_gpu():
    q, k, v, cu = make_packed([300, 64, 0, 700], heads=4, head_dim=80, dtype=torch.bfloat16,
                              device="cuda")
    ref = reference_attention(q, k, v, cu, compute_dtype=torch.float32)
    compiled = torch.compile(lambda q, k, v, cu: vision_attention(q, k, v, cu, 700),
                             fullgraph=True)
    assert relative_error(compiled(q, k, v, cu), ref) < TOLERANCE[torch.bfloat16]

    out = torch.full_like(q, float("nan"))
    vision_attention(q, k, v, cu, 700, out=out)  # warm up: compile outside the capture
    out.fill_(float("nan"))
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        vision_attention(q, k, v, cu, 700, out=out)
    graph.replay()
    torch.cuda.synchronize()
    assert relative_error(out, ref) < TOLERANCE[torch.bfloat16]


def test_trace_time_constants_carry_torchs_own_mark():
    """vitune marks them itself (torch.compiler.assume_constant_result would import
    torch._dynamo); the mark must be the one torch's call sets."""
    from vitune.runtime import api

    def probe():
        return 0

    mark = set(vars(torch.compiler.assume_constant_result(probe)))
    assert mark
    for fn in (api._auto_backend_const, api._decide_config_const):
        assert mark <= set(vars(fn))


def test_importing_vitune_leaves_torch_dynamo_unloaded():
    import subprocess
    import sys

    code = "import sys, vitune.runtime.api; print('torch._dynamo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
