"""The rotary embedding fused into vitune's kernels (`vision_attention(..., rotary=(cos,
sin))`) against transformers' own rotary (`apply_rotary_pos_emb_vision`, rotate-half, fp32)
followed by fp32 attention; both kernels, both layouts, every argument error.
CPU lane through the interpreter (fp32/fp16, small shapes); GPU lane in bf16/fp16 at every
head dim from 32 to 256."""

import pytest
import torch
from conftest import make_packed

from vitune import KernelConfig, reference_attention, vision_attention
from vitune.bench.workloads import qwen_window_seqlens
from vitune.kernels.vision_attn.launch import kernel_is_interpreted
from vitune.kernels.vision_attn.reference import TOLERANCE, relative_error
from vitune.kernels.vision_attn.space import HEAD_DIMS

cpu_lane = pytest.mark.skipif(torch.cuda.is_available() or not kernel_is_interpreted(),
                              reason="CPU lane")


def trig(tokens, head_dim, device="cpu", seed=3, batch=None):
    """cos, sin as the towers build them: positions x inverse frequencies, half repeated."""
    gen = torch.Generator().manual_seed(seed)
    shape = (tokens, 1) if batch is None else (batch, tokens, 1)
    positions = torch.randint(0, 64, shape, generator=gen).float()
    inv_freq = 1e4 ** (-torch.arange(head_dim // 2) / (head_dim // 2))
    angles = positions * inv_freq
    angles = torch.cat([angles, angles], -1).to(device)
    return angles.cos(), angles.sin()


def transformers_rotary_reference(q, k, v, cu, cos, sin, **kwargs):
    """transformers' apply_rotary_pos_emb_vision, then attention in fp32."""
    modeling = pytest.importorskip("transformers.models.qwen2_5_vl.modeling_qwen2_5_vl")
    q_rot, k_rot = modeling.apply_rotary_pos_emb_vision(q, k, cos, sin)
    return reference_attention(q_rot, k_rot, v, cu, compute_dtype=torch.float32, **kwargs)


TILE = KernelConfig(block_m=32, block_n=32, num_warps=2, num_stages=1)
CONFIGS = [TILE, KernelConfig(block_m=32, block_n=32, num_warps=2, num_stages=1,
                              head_split=False),
           KernelConfig(block_m=32, block_n=32, num_warps=2, num_stages=1, heads_fastest=True,
                        windows=True)]


@cpu_lane
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("head_dim", [32, 40, 72, 80, 112])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.short())
def test_packed_matches_transformers_rotary(dtype, head_dim, cfg):
    # An empty segment, a window, a segment past block_m (the window kernel's long path).
    q, k, v, cu = make_packed([0, 9, 40, 3], heads=2, head_dim=head_dim, dtype=dtype,
                              seed=head_dim)
    cos, sin = trig(q.shape[0], head_dim)
    out = torch.full_like(q, float("nan"))
    vision_attention(q, k, v, cu, out=out, config=cfg, rotary=(cos, sin))
    want = transformers_rotary_reference(q, k, v, cu, cos, sin)
    assert relative_error(out, want) < TOLERANCE[dtype]
    unrotated = reference_attention(q, k, v, cu, compute_dtype=torch.float32)
    assert relative_error(out, unrotated) > 10 * TOLERANCE[dtype]  # rotary really applied


@cpu_lane
@pytest.mark.parametrize("per_batch", [False, True])
def test_batched_layout_takes_shared_or_per_batch_trig(per_batch):
    gen = torch.Generator().manual_seed(4)
    q, k, v = torch.randn(3, 2, 20, 2, 48, generator=gen).unbind(0)
    cos, sin = trig(20, 48, batch=2 if per_batch else None)
    out = vision_attention(q, k, v, config=TILE, rotary=(cos, sin))
    want = reference_attention(q, k, v, compute_dtype=torch.float32, rotary=(cos, sin))
    assert relative_error(out, want) < TOLERANCE[torch.float32]


@cpu_lane
def test_strided_trig_rows_and_fp16_trig():
    q, k, v, cu = make_packed([17, 30], heads=2, head_dim=64, dtype=torch.float32)
    cos, sin = trig(47, 64)
    both = torch.stack([cos, sin], 1).half()  # [T, 2, D]: rows strided by 2 * D
    out = vision_attention(q, k, v, cu, config=TILE, rotary=(both[:, 0], both[:, 1]))
    want = transformers_rotary_reference(q, k, v, cu, both[:, 0], both[:, 1])
    assert relative_error(out, want) < TOLERANCE[torch.float32]


@cpu_lane
def test_other_backends_get_q_and_k_rotated_by_vitunes_pass_first(monkeypatch):
    from vitune.kernels.vision_attn import rotate

    passes, real = [], rotate.rotate_rows
    monkeypatch.setattr(rotate, "rotate_rows", lambda x, *a: passes.append(x) or real(x, *a))
    q, k, v, cu = make_packed([12, 12], heads=2, head_dim=32, dtype=torch.float32)
    cos, sin = trig(24, 32)
    out = vision_attention(q, k, v, cu, 12, backend="sdpa", rotary=(cos, sin))
    assert relative_error(out, transformers_rotary_reference(q, k, v, cu, cos, sin)) < 1e-5
    assert len(passes) == 2 and passes[0] is q and passes[1] is k


@cpu_lane
def test_rotation_falls_back_to_torch_where_no_triton_kernel_runs():
    """bf16 in the interpreter (which cannot run it) and tracing under torch.compile rotate
    with torch: the same values."""
    from vitune.kernels.vision_attn.rotary import apply_rotary
    from vitune.kernels.vision_attn.rotate import rotated

    q, _, _, _ = make_packed([12, 12], heads=2, head_dim=32, dtype=torch.float32)
    cos, sin = trig(24, 32)
    assert relative_error(rotated(q, cos, sin), apply_rotary(q, cos, sin)) < 1e-6
    q16 = q.bfloat16()
    assert torch.equal(rotated(q16, cos, sin), apply_rotary(q16, cos, sin))
    compiled = torch.compile(rotated, fullgraph=True, backend="eager")
    assert relative_error(compiled(q, cos, sin), apply_rotary(q, cos, sin)) < 1e-6


@cpu_lane
def test_fullgraph_compile_with_rotary():
    q, k, v, cu = make_packed([10, 6], heads=2, head_dim=32, dtype=torch.float32)
    cos, sin = trig(16, 32)
    compiled = torch.compile(lambda *a: vision_attention(*a, config=TILE, rotary=(cos, sin)),
                             fullgraph=True, backend="eager")
    out = compiled(q, k, v, cu)
    assert relative_error(out, transformers_rotary_reference(q, k, v, cu, cos, sin)) < 1e-4


@cpu_lane
@pytest.mark.parametrize("bad,error,match", [
    ("one", TypeError, "rotary must be a \\(cos, sin\\) pair"),
    ("short", ValueError, "rotary cos has shape \\(10, 32\\): expected \\[total_tokens"),
    ("float64", TypeError, "rotary cos has dtype torch.float64"),
    ("column-major", ValueError, "rotary sin has stride 11 on head_dim"),
    ("mismatched", ValueError, "rotary cos and sin must match"),
    ("device", ValueError, "rotary cos is on meta but q is on cpu"),
])
def test_rotary_argument_errors_name_the_problem(bad, error, match):
    q, k, v, cu = make_packed([5, 6], heads=1, head_dim=32, dtype=torch.float32)
    cos, sin = trig(11, 32)
    rotary = {"one": (cos,), "short": (cos[:10], sin[:10]),
              "float64": (cos.double(), sin.double()),
              "column-major": (cos, sin.t().contiguous().t()),
              "mismatched": (cos, sin.half()),
              "device": (cos.to("meta"), sin.to("meta"))}[bad]
    with pytest.raises(error, match=match):
        vision_attention(q, k, v, cu, rotary=rotary)


# GPU lane: every head dim the kernels take, both regimes, bf16 and fp16.
WINDOWS = list(qwen_window_seqlens(448, 672))  # 64-token windows and smaller ones
FULL = [0, 700, 333, 1]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("head_dim", HEAD_DIMS)
@pytest.mark.parametrize("regime", ["window", "full"])
def test_gpu_every_head_dim_matches_transformers_rotary(dtype, head_dim, regime):
    lengths = WINDOWS if regime == "window" else FULL
    q, k, v, cu = make_packed(lengths, heads=2, head_dim=head_dim, dtype=dtype,
                              device="cuda", seed=head_dim)
    cos, sin = trig(q.shape[0], head_dim, "cuda")
    out = torch.full_like(q, float("nan"))
    vision_attention(q, k, v, cu, max(lengths), out=out, rotary=(cos, sin))
    want = transformers_rotary_reference(q, k, v, cu, cos, sin)
    assert relative_error(out, want) < TOLERANCE[dtype]


@pytest.mark.gpu
@pytest.mark.parametrize("head_dim", [72, 80])
def test_gpu_compile_and_cuda_graph_with_rotary(head_dim):
    q, k, v, cu = make_packed([1024, 64, 64, 300], heads=4, head_dim=head_dim,
                              dtype=torch.bfloat16, device="cuda")
    cos, sin = trig(q.shape[0], head_dim, "cuda")
    want = transformers_rotary_reference(q, k, v, cu, cos, sin)
    compiled = torch.compile(lambda q, k, v: vision_attention(q, k, v, cu, 1024,
                                                              rotary=(cos, sin)),
                             fullgraph=True)
    assert relative_error(compiled(q, k, v), want) < TOLERANCE[torch.bfloat16]
    graph, static = torch.cuda.CUDAGraph(), vision_attention(q, k, v, cu, 1024,
                                                             rotary=(cos, sin))
    torch.cuda.synchronize()
    with torch.cuda.graph(graph):
        static = vision_attention(q, k, v, cu, 1024, rotary=(cos, sin))
    static.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    assert relative_error(static, want) < TOLERANCE[torch.bfloat16]


COMPILE_SCRIPT = """
import sys, torch
from vitune.kernels.compile_only import compile_only_for
compile_only_for(({major}, 0))
from vitune.kernels.arch import ARCHS
from vitune.kernels.vision_attn.launch import launch_vision_attention
from vitune.kernels.vision_attn.space import default_config, fit_to_rotary
from vitune.bench.workloads import Workload
arch = ARCHS["{arch}"]
for d in (72, 80):
    for w in (Workload("full", (700, 333), heads=2, head_dim=d),
              Workload("windows", (64,) * 10 + (16,), heads=2, head_dim=d)):
        q, k, v = w.make_qkv("meta")
        cos = torch.empty(w.total_tokens, d, device="meta")
        cfg = fit_to_rotary(default_config(d, torch.bfloat16, arch, w.max_seqlen), d,
                            torch.bfloat16, arch)
        launch_vision_attention(q, k, v, torch.empty(q.shape, dtype=q.dtype, device="meta"),
                                w.cu_seqlens("meta"), d ** -0.5, cfg, warmup=True,
                                rotary=(cos, torch.empty_like(cos)))
"""


@pytest.mark.parametrize("major,arch", [(9, "hopper"), (10, "blackwell")])
def test_rotary_kernels_compile_for_hopper_and_blackwell_without_a_gpu(major, arch, tmp_path):
    """The interpreter runs what the compiler may reject: the tile kernel (queries rotated),
    the key-rotation pass and the window kernel with rotary, compiled for sm_90 and sm_100
    with Triton's real compiler on a machine without a GPU."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path), CUDA_VISIBLE_DEVICES="")
    run = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT.format(major=major, arch=arch)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    names = {p.stem for p in tmp_path.glob("*/*.cubin")}
    assert {"vision_attn_fwd", "vision_attn_windows_fwd", "rotate_rows_fwd"} <= names
