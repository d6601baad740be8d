"""Inputs that once gave wrong output or a traceback from deep inside without a word: each
now gets a clear error naming the argument, or the right output (CPU lane, interpreter)."""

import pytest
import torch
from conftest import make_packed

from vitune import reference_attention, vision_attention
from vitune.kernels.vision_attn.launch import kernel_is_interpreted
from vitune.kernels.vision_attn.reference import TOLERANCE, relative_error
from vitune.kernels.vision_attn.space import KernelConfig

cpu_lane = pytest.mark.skipif(torch.cuda.is_available() or not kernel_is_interpreted(),
                              reason="CPU lane")
WINDOWS = KernelConfig(block_m=32, block_n=32, num_warps=2, num_stages=1, heads_fastest=True,
                       windows=True)


@pytest.mark.parametrize("huge", [2 ** 2000, 2 ** 31], ids=["2^2000", "2^31"])
def test_a_max_seqlen_past_int32_is_a_value_error(huge):
    q, k, v, cu = make_packed([5, 7], heads=1, head_dim=32, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"max_seqlen=(\d+|<2001-bit int>) is past int32"):
        vision_attention(q, k, v, cu, huge)


@pytest.mark.parametrize("scale", [10 ** 400, -(10 ** 400)], ids=["1e400", "-1e400"])
def test_a_scale_too_large_for_a_float_is_a_value_error(scale):
    q, k, v, cu = make_packed([5, 7], heads=1, head_dim=32, dtype=torch.float32)
    with pytest.raises(ValueError, match="scale must be finite, got an int too large"):
        vision_attention(q, k, v, cu, scale=scale)


@cpu_lane
def test_bf16_through_the_interpreter_is_refused_not_garbage():
    q, k, v, cu = make_packed([5, 7], heads=1, head_dim=32, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match="Triton interpreter computes bfloat16"):
        vision_attention(q, k, v, cu)
    # backends that do not go through the interpreter still take bf16
    out = vision_attention(q, k, v, cu, 7, backend="sdpa")
    assert relative_error(out, reference_attention(q, k, v, cu)) < TOLERANCE[torch.bfloat16]


@cpu_lane
def test_window_kernel_lengths_do_not_wrap_in_int32():
    """cu_seqlens holding -2^31 (validate off): the longest segment was computed in int32,
    wrapped negative, and the long segment it hid was never attended (its rows left as the
    output buffer held them)."""
    q, k, v, _ = make_packed([40], heads=1, head_dim=32, dtype=torch.float32)
    cu = torch.tensor([0, -2 ** 31, 40], dtype=torch.int32)  # segment 1 clamps to [0, 40)
    out = torch.full_like(q, float("nan"))
    vision_attention(q, k, v, cu, out=out, config=WINDOWS)
    clamped = torch.tensor([0, 0, 40], dtype=torch.int32)
    assert relative_error(out, reference_attention(q, k, v, clamped)) < 1e-4


@cpu_lane
def test_out_with_a_stride_0_axis_is_refused():
    q, k, v, cu = make_packed([5, 7], heads=2, head_dim=32, dtype=torch.float32)
    out = torch.empty(1, 2, 32).expand(12, 2, 32)
    with pytest.raises(ValueError, match="out has stride 0 on axis 0"):
        vision_attention(q, k, v, cu, out=out)


@cpu_lane
@pytest.mark.parametrize("which", ["k", "v", "part of q"])
def test_out_overlapping_its_inputs_is_refused(which):
    q, k, v, cu = make_packed([5, 7], heads=2, head_dim=32, dtype=torch.float32)
    buffer = q.as_strided((12, 2, 32), q.stride(), q.storage_offset() + 32) \
        if which == "part of q" else {"k": k, "v": v}[which]
    with pytest.raises(ValueError, match="out overlaps"):
        vision_attention(q, k, v, cu, out=buffer)


@cpu_lane
def test_out_may_be_q_itself_or_a_disjoint_slice_of_the_same_buffer():
    # A fused [T, 4, H, D] buffer: q, k, v and the output as its four slices.
    gen = torch.Generator().manual_seed(1)
    fused = torch.randn(12, 4, 2, 32, generator=gen)
    q, k, v, o = fused.unbind(1)
    cu = torch.tensor([0, 5, 12], dtype=torch.int32)
    want = reference_attention(q, k, v, cu)
    vision_attention(q, k, v, cu, out=o)
    assert relative_error(o, want) < 1e-4
    vision_attention(q, k, v, cu, out=q)  # in place over q: each program reads its own rows
    assert relative_error(q, want) < 1e-4


def test_the_max_seqlen_contract_is_checked_by_validate():
    """n segments of at most max_seqlen tokens adding up to n * max_seqlen are all equal
    (what SDPA's batched layout relies on) only if max_seqlen is at least the longest:
    validate=True checks that contract."""
    q, k, v, cu = make_packed([3, 1], heads=1, head_dim=32, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"max_seqlen=2 is below the longest segment \(3\)"):
        vision_attention(q, k, v, cu, 2, backend="sdpa", validate=True)
