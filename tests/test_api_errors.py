"""Bad input gets a clear error naming the argument, before any kernel runs."""

import pytest
import torch
from conftest import make_packed

from vitune import KernelConfig, vision_attention


@pytest.fixture
def packed():
    return make_packed([5, 7], heads=2, head_dim=64, dtype=torch.float16)


def test_mismatched_dtypes(packed):
    q, k, v, cu = packed
    with pytest.raises(TypeError, match="k has dtype torch.float32 but q has torch.float16"):
        vision_attention(q, k.float(), v, cu)


def test_unsupported_dtype():
    q, k, v, cu = make_packed([4], heads=1, head_dim=32, dtype=torch.float64)
    with pytest.raises(TypeError, match="q has dtype torch.float64"):
        vision_attention(q, k, v, cu)


def test_mismatched_shapes(packed):
    q, k, v, cu = packed
    with pytest.raises(ValueError, match="v has shape"):
        vision_attention(q, k, v[:, :1], cu)


@pytest.mark.parametrize("shape", [(12, 64), (1, 12, 2, 64)])
def test_wrong_rank_for_packed_layout(shape, packed):
    cu = packed[3]
    x = torch.randn(shape, dtype=torch.float16)
    with pytest.raises(ValueError, match=r"expected packed \[total_tokens, heads, head_dim\]"):
        vision_attention(x, x, x, cu)


def test_wrong_rank_for_batched_layout(packed):
    q, k, v, _ = packed
    with pytest.raises(ValueError, match="expected batched"):
        vision_attention(q, k, v)


@pytest.mark.parametrize("head_dim", [60, 24, 264])
def test_unsupported_head_dim(head_dim):
    q, k, v, cu = make_packed([4], heads=1, head_dim=head_dim, dtype=torch.float16)
    with pytest.raises(ValueError, match=f"head_dim={head_dim} is not supported"):
        vision_attention(q, k, v, cu)


def test_cu_seqlens_wrong_dtype(packed):
    q, k, v, cu = packed
    with pytest.raises(TypeError, match="cu_seqlens has dtype torch.int64"):
        vision_attention(q, k, v, cu.long())


def test_cu_seqlens_wrong_rank_and_length(packed):
    q, k, v, cu = packed
    with pytest.raises(ValueError, match="cu_seqlens has shape"):
        vision_attention(q, k, v, cu[None])
    with pytest.raises(ValueError, match="cu_seqlens has 1 entries"):
        vision_attention(q, k, v, cu[:1])
    with pytest.raises(TypeError, match="cu_seqlens must be a torch.Tensor"):
        vision_attention(q, k, v, [0, 5, 12])


def test_cu_seqlens_wrong_device(packed):
    q, k, v, cu = packed
    with pytest.raises(ValueError, match="cu_seqlens is on meta"):
        vision_attention(q, k, v, torch.empty(3, dtype=torch.int32, device="meta"))


def test_mismatched_devices(packed):
    q, k, v, cu = packed
    with pytest.raises(ValueError, match="k is on meta but q is on cpu"):
        vision_attention(q, k.to("meta"), v, cu)


def test_out_wrong_shape_and_dtype(packed):
    q, k, v, cu = packed
    with pytest.raises(ValueError, match="out has shape"):
        vision_attention(q, k, v, cu, out=torch.empty(12, 2, 32, dtype=q.dtype))
    with pytest.raises(TypeError, match="out has dtype"):
        vision_attention(q, k, v, cu, out=torch.empty(q.shape))


def test_non_unit_head_dim_stride(packed):
    q, k, v, cu = packed
    wide = torch.randn(12, 2, 128, dtype=q.dtype)
    with pytest.raises(ValueError, match="q has stride 2 on head_dim"):
        vision_attention(wide[..., ::2], k, v, cu)


def test_bad_config(packed):
    q, k, v, cu = packed
    with pytest.raises(ValueError, match="block_m=48"):
        vision_attention(q, k, v, cu, config=KernelConfig(block_m=48))
    with pytest.raises(ValueError, match="unknown keys"):
        vision_attention(q, k, v, cu, config={"BLOCK_M": 64})
    with pytest.raises(TypeError, match="config must be"):
        vision_attention(q, k, v, cu, config="fast")


def test_bad_scale_and_max_seqlen(packed):
    q, k, v, cu = packed
    with pytest.raises(ValueError, match="scale must be finite"):
        vision_attention(q, k, v, cu, scale=float("nan"))
    with pytest.raises(TypeError, match="max_seqlen must be a Python int"):
        vision_attention(q, k, v, cu, max_seqlen=torch.tensor(7))
    with pytest.raises(ValueError, match="max_seqlen must be >= 0"):
        vision_attention(q, k, v, cu, max_seqlen=-1)


def test_forward_only(packed):
    q, k, v, cu = packed
    with pytest.raises(NotImplementedError, match="forward-only"):
        vision_attention(q.requires_grad_(), k, v, cu)


@pytest.mark.parametrize(
    ("bounds", "message"),
    [([1, 5, 12], "must start at 0"), ([0, 7, 5, 12], r"non-decreasing: entry 2 \(5\) < entry 1"),
     ([0, 5, 11], "ends at 11 but q has 12 tokens")],
)
def test_validate_checks_segment_values(packed, bounds, message):
    q, k, v, _ = packed
    cu = torch.tensor(bounds, dtype=torch.int32)
    with pytest.raises(ValueError, match=message):
        vision_attention(q, k, v, cu, validate=True)


def test_validate_checks_max_seqlen_and_env_var(packed, monkeypatch):
    q, k, v, cu = packed
    with pytest.raises(ValueError, match="below the longest segment"):
        vision_attention(q, k, v, cu, max_seqlen=6, validate=True)
    monkeypatch.setenv("VITUNE_VALIDATE", "1")
    with pytest.raises(ValueError, match="must start at 0"):
        vision_attention(q, k, v, torch.tensor([2, 12], dtype=torch.int32))
