"""The window kernel (KernelConfig.windows; vitune/kernels/vision_attn/windows.py) against
the float64 reference: through the interpreter on the CPU (a grid of 4 programs, so each
takes several items), and (GPU lane) in bf16 on Qwen2.5-VL's windows with the configs its
A/B timed. Outputs are poisoned first."""

import itertools

import pytest
import torch
from conftest import make_packed

from vitune.kernels.vision_attn.launch import kernel_is_interpreted, launch_vision_attention
from vitune.kernels.vision_attn.reference import TOLERANCE, reference_attention, relative_error
from vitune.kernels.vision_attn.space import KernelConfig

interpreter_only = pytest.mark.skipif(
    torch.cuda.is_available() or not kernel_is_interpreted(),
    reason="CPU lane: runs the kernel in the Triton interpreter")

# segments shorter than, as long as and longer than a 16-row step; empty ones; a lone
# token; more (segment, head) items than programs
LENGTHS = [16, 5, 0, 1, 40, 16, 0, 3]


def window(block: int, warps: int, stages: int, split: bool) -> KernelConfig:
    return KernelConfig(block_m=block, block_n=block, num_warps=warps, num_stages=stages,
                        head_split=split, heads_fastest=True, windows=True)


def window_configs() -> list[KernelConfig]:
    """The configs the window kernel's A/B timed on Qwen2.5-VL's windows: windows of <= 64
    tokens in one 64-row step; pipelining depth, warps, head split."""
    return [window(64, w, s, split)
            for w, s, split in itertools.product((4, 8), (2, 3, 4), (True, False))]


def run(lengths, heads, head_dim, dtype, cfg, device="cpu"):
    q, k, v, cu = make_packed(lengths, heads, head_dim, dtype, device=device)
    out = torch.full_like(q, float("nan"))
    assert launch_vision_attention(q, k, v, out, cu, head_dim ** -0.5, cfg) is out
    return relative_error(out, reference_attention(q, k, v, cu))


@interpreter_only
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("head_dim", [32, 40])  # no padding; padded to 64 or 32 + 16
@pytest.mark.parametrize("cfg", [window(16, 2, 1, True), window(32, 4, 2, False)],
                         ids=KernelConfig.short)
def test_window_kernel_matches_the_reference(dtype, head_dim, cfg):
    assert run(LENGTHS, 3, head_dim, dtype, cfg) < TOLERANCE[dtype]


@interpreter_only
def test_batched_input_runs_the_same_tiles_in_the_tile_kernel():
    q, k, v = (torch.randn(2, 20, 3, 32) for _ in range(3))
    out = torch.full_like(q, float("nan"))
    launch_vision_attention(q, k, v, out, None, 32 ** -0.5, window(16, 2, 1, True))
    ref = torch.stack([reference_attention(q[b], k[b], v[b],
                                           torch.tensor([0, 20], dtype=torch.int32))
                       for b in range(2)])
    assert relative_error(out, ref) < TOLERANCE[torch.float32]


@interpreter_only
def test_malformed_cu_seqlens_never_reach_outside_the_tensors():
    """A decreasing bound and one past the tokens are clamped: every read and write stays
    inside q, k, v and out (guard rows after each stay as they were). The runtime's
    validation is what rejects such input."""
    tokens, guard, heads, dim = 16, 4, 2, 32
    bufs = [torch.randn(tokens + guard, heads, dim) for _ in range(3)]
    for b in bufs:
        b[tokens:] = float("nan")  # a read past the tokens would reach the output
    out_buf = torch.full((tokens + guard, heads, dim), 7.0)
    q, k, v = (b[:tokens] for b in bufs)
    cu = torch.tensor([0, 10, 6, 1000], dtype=torch.int32)
    launch_vision_attention(q, k, v, out_buf[:tokens], cu, dim ** -0.5,
                            window(16, 2, 1, True))
    assert torch.isfinite(out_buf[:tokens]).all()
    assert (out_buf[tokens:] == 7.0).all()


@interpreter_only
def test_rows_outside_every_segment_are_zeros():
    """cu_seqlens that start after token 0 and end before the last token (what the
    runtime's validation rejects): those rows are written as zeros, as the tile kernel
    writes them, and the segments between are right."""
    q, k, v, _ = make_packed([21], 3, 32, torch.float32)
    cu = torch.tensor([3, 9, 17], dtype=torch.int32)
    out = torch.full_like(q, float("nan"))
    launch_vision_attention(q, k, v, out, cu, 32 ** -0.5, window(16, 2, 1, True))
    assert (out[:3] == 0).all() and (out[17:] == 0).all()
    inner = torch.tensor([0, 6, 14], dtype=torch.int32)
    ref = reference_attention(q[3:17], k[3:17], v[3:17], inner)
    assert relative_error(out[3:17], ref) < TOLERANCE[torch.float32]


@interpreter_only
def test_window_configs_compute_the_reference_result():
    """The A/B's window configs are distinct window-kernel configs the rules admit on an
    H100, and a few of them (through the interpreter) give the reference's result."""
    from vitune.kernels.vision_attn.space import check_config
    from vitune.runtime.gpu import identity_for_key

    configs = window_configs()
    assert len(set(configs)) == len(configs) == 12 and all(c.windows for c in configs)
    hopper = identity_for_key("h100").arch
    assert all(check_config(c, 80, torch.bfloat16, hopper) is None for c in configs)
    q, k, v, cu = make_packed([64, 20, 64], heads=3, head_dim=32, dtype=torch.float16)
    ref = reference_attention(q, k, v, cu)
    for cfg in (configs[0], configs[-1]):
        out = torch.full_like(q, float("nan"))
        launch_vision_attention(q, k, v, out, cu, 32 ** -0.5, cfg)
        assert relative_error(out, ref) < TOLERANCE[torch.float16], cfg.short()


@pytest.mark.gpu
@pytest.mark.parametrize("head_dim", [64, 72, 80, 88, 128])
def test_window_kernel_on_qwen_windows(head_dim):
    """Every config the A/B times, on one image's windows and on segments up to 200 tokens
    (the long-segment walk after the pipelined loop)."""
    from conftest import random_lengths

    from vitune.bench.workloads import qwen_window_seqlens

    for lengths in (list(qwen_window_seqlens(1024, 1024)), random_lengths(40, 200, seed=1)):
        for cfg in window_configs():
            err = run(lengths, 4, head_dim, torch.bfloat16, cfg, device="cuda")
            assert err < TOLERANCE[torch.bfloat16], f"{cfg.short()}: {err:.1e}"
