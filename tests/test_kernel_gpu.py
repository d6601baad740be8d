"""GPU lane: bf16/fp16 at the vision head dims in both regimes, and every valid config of the
search space on one shape per regime. Run with `pytest -m gpu` on a CUDA machine."""

import pytest
import torch
from conftest import make_packed

from vitune import KernelConfig, reference_attention, vision_attention
from vitune.bench.workloads import qwen_window_seqlens
from vitune.kernels.vision_attn.reference import TOLERANCE, relative_error
from vitune.kernels.vision_attn.space import valid_configs
from vitune.runtime.gpu import device_arch

pytestmark = pytest.mark.gpu

WINDOW = list(qwen_window_seqlens(1024, 1024))  # 81 x 64, 18 x 16, 1 x 4 tokens
FULL = [0, 1000, 517, 1]  # an empty first segment, a non-multiple of any tile, a lone token
GPU_DTYPES = [torch.bfloat16, torch.float16]


def check(lengths, heads, head_dim, dtype, seed, **kwargs):
    q, k, v, cu = make_packed(lengths, heads, head_dim, dtype, device="cuda", seed=seed)
    out = torch.full_like(q, float("nan"))
    vision_attention(q, k, v, cu, out=out, **kwargs)
    torch.cuda.synchronize()
    ref = reference_attention(q, k, v, cu, compute_dtype=torch.float32)
    err = relative_error(out, ref)
    assert err < TOLERANCE[dtype], f"relative error {err:.2e}"


@pytest.mark.parametrize("dtype", GPU_DTYPES, ids=str)
@pytest.mark.parametrize("head_dim", [64, 72, 80, 88, 96, 128])
@pytest.mark.parametrize("regime", ["window", "full"])
def test_default_config(dtype, head_dim, regime):
    lengths = WINDOW if regime == "window" else FULL
    check(lengths, heads=4, head_dim=head_dim, dtype=dtype, seed=head_dim,
          max_seqlen=max(lengths))


def test_fp32_inputs():
    check([0, 300, 77], heads=2, head_dim=80, dtype=torch.float32, seed=1)


@pytest.mark.parametrize("dtype", GPU_DTYPES, ids=str)
def test_batched_layout(dtype):
    gen = torch.Generator().manual_seed(2)
    qkv = torch.randn(3, 600, 3, 4, 80, generator=gen).to("cuda", dtype)
    q, k, v = qkv.unbind(2)
    out = vision_attention(q, k, v)
    ref = reference_attention(q, k, v, compute_dtype=torch.float32)
    assert relative_error(out, ref) < TOLERANCE[dtype]


def test_malformed_cu_seqlens_is_memory_safe():
    q, k, v, _ = make_packed([300], 2, 64, torch.float16, device="cuda")
    cu = torch.tensor([0, 100, 50, 10**9], dtype=torch.int32, device="cuda")
    out = vision_attention(q, k, v, cu)
    torch.cuda.synchronize()
    assert torch.isfinite(out).all()


def test_misaligned_strides_with_split_head_dim_on_wgmma():
    """Explicit configs that cannot take such strides are refused; the default adapts."""
    q, k, v, cu = make_packed([100, 60], 2, 84, torch.bfloat16, device="cuda")
    q, k, v = q[..., :80], k[..., :80], v[..., :80]  # head stride 84: not a multiple of 8
    if device_arch(q.device).name in ("hopper", "blackwell"):
        with pytest.raises(ValueError, match="multiple of 8 elements"):
            vision_attention(q, k, v, cu, config=KernelConfig(block_m=64, num_warps=4))
    out = vision_attention(q, k, v, cu)
    ref = reference_attention(q, k, v, cu, compute_dtype=torch.float32)
    assert relative_error(out, ref) < TOLERANCE[torch.bfloat16]


def _all_configs():
    if not torch.cuda.is_available():
        return []
    arch = device_arch(torch.device("cuda"))
    return [(d, cfg) for d in (80, 72, 88) for cfg in valid_configs(d, torch.bfloat16, arch)]


@pytest.mark.parametrize(("head_dim", "cfg"), _all_configs(),
                         ids=lambda x: x.short() if isinstance(x, KernelConfig) else f"d{x}")
def test_every_valid_config(head_dim, cfg):
    """A valid config that fails to compile or gives a wrong answer is a bug in the kernel or
    in the validity rules."""
    check(WINDOW, heads=2, head_dim=head_dim, dtype=torch.bfloat16, seed=11, config=cfg)
    check(FULL, heads=2, head_dim=head_dim, dtype=torch.bfloat16, seed=12, config=cfg)


@pytest.mark.parametrize("batched", [False, True])
def test_tma_configs_read_through_descriptors(batched, monkeypatch):
    """On a GPU with TMA, fused qkv views take the descriptor path (no silent fallback)."""
    from vitune.kernels.vision_attn import launch

    if not device_arch(torch.device("cuda")).has_tma:
        pytest.skip("no tensor-memory accelerator on this GPU")
    described = []
    real = launch.chunk_descriptors
    monkeypatch.setattr(launch, "chunk_descriptors", lambda *a: described.append(1) or real(*a))
    cfg = KernelConfig(block_m=128, block_n=64, num_warps=8, num_stages=3, tma=True)
    if batched:
        qkv = torch.randn(2, 700, 3, 4, 80, device="cuda", dtype=torch.bfloat16)
        q, k, v = qkv.unbind(2)
        out = vision_attention(q, k, v, config=cfg)
        ref = reference_attention(q, k, v, compute_dtype=torch.float32)
        assert relative_error(out, ref) < TOLERANCE[torch.bfloat16]
    else:
        check(FULL, heads=4, head_dim=80, dtype=torch.bfloat16, seed=3, config=cfg)
    assert described


# configs that need no aligned base for anything but TMA: a power-of-two head dim, and a
# split one on mma v2 (2 warps); split configs on wgmma refuse such bases (fit_to_layout)
@pytest.mark.parametrize("head_dim, cfg", [
    (128, KernelConfig(block_m=128, block_n=64, num_warps=4, num_stages=3, tma=True)),
    (80, KernelConfig(block_m=32, block_n=64, num_warps=2, num_stages=2, tma=True))])
def test_a_reused_plan_with_a_misaligned_base_takes_pointer_loads(head_dim, cfg):
    """A repeated call reuses its plan (same shapes and strides); a view 4 elements into
    its storage cannot be described by TMA and must fall back, still right."""
    from vitune.kernels.vision_attn import launch

    if not device_arch(torch.device("cuda")).has_tma:
        pytest.skip("no tensor-memory accelerator on this GPU")
    tokens, heads = 1517, 4
    size = tokens * 3 * heads * head_dim
    flat = torch.randn(size + 4, device="cuda").to(torch.bfloat16)
    cu = torch.tensor([0, 1000, 1517], dtype=torch.int32, device="cuda")
    for offset in (0, 4, 0):
        q, k, v = flat[offset:offset + size].view(tokens, 3, heads, head_dim).unbind(1)
        assert (k.data_ptr() % 16 == 0) == (offset == 0)
        out = torch.full_like(q, float("nan"))
        vision_attention(q, k, v, cu, 1000, out=out, config=cfg)
        ref = reference_attention(q, k, v, cu, compute_dtype=torch.float32)
        assert relative_error(out, ref) < TOLERANCE[torch.bfloat16]
    assert launch.tma_geometry_ok(k, v, tokens)


def test_one_binary_serves_every_segment_count():
    """Counts of 1, of 16 and of neither, in one process: the kernel compiled once (Triton
    would specialise the count arguments and compile again for each class)."""
    from vitune.kernels.vision_attn.kernel import vision_attn_fwd

    cfg = KernelConfig(block_m=64, block_n=64, num_warps=4, num_stages=2)
    binaries = vision_attn_fwd.device_caches[torch.cuda.current_device()][0]
    before = None
    for lengths in ([300, 212], [512], [32] * 16, [64] * 7):
        check(lengths, heads=2, head_dim=64, dtype=torch.float16, seed=len(lengths),
              config=cfg)
        before = len(binaries) if before is None else before
    assert len(binaries) == before
