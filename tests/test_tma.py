"""Keys and values through tensor descriptors (config tma=True): the rules that admit it, the
layouts that can be described, and the kernel's results on the CPU through the interpreter."""

import pytest
import torch
from conftest import make_packed, random_lengths

from vitune import KernelConfig, reference_attention, vision_attention
from vitune.kernels.arch import AMPERE, HOPPER
from vitune.kernels.vision_attn import launch
from vitune.kernels.vision_attn.reference import TOLERANCE, relative_error
from vitune.kernels.vision_attn.space import check_config, valid_configs

interpreted = pytest.mark.skipif(
    torch.cuda.is_available() or not launch.kernel_is_interpreted(),
    reason="CPU lane: runs the kernel in the Triton interpreter")

TMA = KernelConfig(block_m=32, block_n=32, num_warps=2, num_stages=2, tma=True)
TMA_WIDE = KernelConfig(block_m=64, block_n=64, num_warps=4, num_stages=3, heads_fastest=True,
                        tma=True)


def test_rules_admit_tma_only_where_it_can_run():
    assert check_config(TMA, 80, torch.bfloat16, HOPPER) is None
    assert "no tensor-memory" in check_config(TMA, 80, torch.bfloat16, AMPERE)
    assert "16-bit" in check_config(TMA, 80, torch.float32, HOPPER)
    padded = KernelConfig(block_m=32, block_n=32, num_warps=2, head_split=False, tma=True)
    assert "past head_dim" in check_config(padded, 80, torch.bfloat16, HOPPER)
    assert check_config(padded, 64, torch.bfloat16, HOPPER) is None  # nothing is padded
    hopper = list(valid_configs(80, torch.bfloat16, HOPPER))
    assert any(c.tma for c in hopper) and not any(c.tma for c in
                                                  valid_configs(80, torch.bfloat16, AMPERE))
    assert not any(c.tma and not c.head_split for c in hopper)


def _fused(tokens: int, heads: int, head_dim: int, offset: int = 0) -> list[torch.Tensor]:
    flat = torch.randn(tokens * 3 * heads * head_dim + offset).to(torch.float16)
    return flat[offset:].view(tokens, 3, heads, head_dim).unbind(1)


def _describable(k, v, rows):
    """What the launch checks before it builds descriptors: aligned bases, strides it can
    describe."""
    return launch.tensor_bases_aligned(k, v) and launch.tma_geometry_ok(k, v, rows)


@pytest.mark.parametrize("head_dim", [72, 80])
def test_layouts_that_descriptors_can_describe(head_dim):
    _, k, v = _fused(10, 2, head_dim)
    assert _describable(k, v, 10)
    # a base that is not 16-byte aligned (a view 4 elements into its storage)
    _, k, v = _fused(10, 2, head_dim, offset=4)
    assert not _describable(k, v, 10)
    # head-major storage: one head's rows do not sit beside the other heads'
    heads_major = torch.randn(2, 10, head_dim).to(torch.float16).transpose(0, 1)
    assert not _describable(heads_major, heads_major, 10)
    # batched, but each batch's rows do not follow the previous batch's
    batched = torch.randn(2, 12, 2, head_dim).to(torch.float16)[:, :10]
    assert not _describable(batched.contiguous(), batched, 20)
    assert _describable(batched.contiguous(), batched.contiguous(), 20)


@interpreted
@pytest.mark.parametrize("head_dim", [64, 72, 80, 88, 112])
@pytest.mark.parametrize("cfg", [TMA, TMA_WIDE], ids=["small", "wide"])
def test_packed_segments_through_descriptors(head_dim, cfg, monkeypatch):
    described = []
    real = launch.chunk_descriptors
    monkeypatch.setattr(launch, "chunk_descriptors",
                        lambda *a: described.append(1) or real(*a))
    lengths = random_lengths(6, 45, seed=head_dim)
    q, k, v, cu = make_packed([0, *lengths, 0, 1], heads=2, head_dim=head_dim,
                              dtype=torch.float16, seed=head_dim)
    out = torch.full_like(q, float("nan"))
    vision_attention(q, k, v, cu, out=out, config=cfg)
    assert described, "the descriptor path was not taken"
    assert relative_error(out, reference_attention(q, k, v, cu)) < TOLERANCE[torch.float16]


@interpreted
@pytest.mark.parametrize("aligned", [True, False])
def test_batched_through_descriptors_or_pointers(aligned, monkeypatch):
    """Batches whose rows follow each other take descriptors; a sliced sequence axis (rows
    of batch 0 run into rows the view leaves out) falls back to pointer loads, still right."""
    described = []
    real = launch.chunk_descriptors
    monkeypatch.setattr(launch, "chunk_descriptors",
                        lambda *a: described.append(1) or real(*a))
    gen = torch.Generator().manual_seed(2)
    qkv = torch.randn(2, 41 if aligned else 48, 3, 2, 80, generator=gen).to(torch.float16)
    q, k, v = qkv[:, :41].unbind(2)
    out = torch.full_like(q, float("nan"))
    vision_attention(q, k, v, out=out, config=TMA_WIDE)
    assert bool(described) == aligned
    assert relative_error(out, reference_attention(q, k, v)) < TOLERANCE[torch.float16]


def test_descriptor_configs_on_hopper_leave_p_out_of_shared_memory():
    """wgmma keeps P in registers when descriptors feed K and V (the compiler's figure:
    `vitune compile-check --arch hopper`), so this 128 x 128 three-stage tile fits at head_dim
    128 on Hopper; with pointer loads, or on Blackwell (not measured), it does not."""
    from vitune.kernels.arch import BLACKWELL
    from vitune.kernels.vision_attn.space import estimate_smem_bytes

    big = KernelConfig(block_m=128, block_n=128, num_warps=8, num_stages=3, tma=True)
    assert check_config(big, 128, torch.bfloat16, HOPPER) is None
    assert "shared memory" in check_config(big, 128, torch.bfloat16, BLACKWELL)
    pointers = KernelConfig(block_m=128, block_n=128, num_warps=8, num_stages=3)
    assert "shared memory" in check_config(pointers, 128, torch.bfloat16, HOPPER)
    assert estimate_smem_bytes(big, 128, torch.bfloat16, HOPPER) < \
        estimate_smem_bytes(big, 128, torch.bfloat16)


def test_default_falls_back_to_a_valid_config_when_strides_are_not_multiples_of_8(
        monkeypatch):
    """On Hopper, split head_dim 72 needs strides in multiples of 8; other strides make the
    built-in default (descriptors on) fall back to padding, and so to pointer loads: the
    rules admit no descriptors with padding."""
    from vitune.runtime import api
    from vitune.runtime.gpu import identity_for_key
    from vitune.runtime.selector import length_key

    monkeypatch.setattr(api, "device_gpu", lambda device: identity_for_key("h100"))
    strides = ((3 * 16 * 76, 76, 1),) * 3 + (None,)
    fields = api._decide_config_uncached("cuda", 0, 72, torch.bfloat16, length_key(4096),
                                         None, False, strides)
    cfg = KernelConfig(*fields)
    assert not cfg.head_split and not cfg.tma
    assert check_config(cfg, 72, torch.bfloat16, HOPPER) is None


@interpreted
def test_a_reused_plan_checks_each_calls_addresses(monkeypatch):
    """A view 4 elements into its storage takes pointer loads, still right; calls with the
    same layout and base alignment share a plan (the key holds the alignment, not the
    address, which the launch checks on every call)."""
    from vitune.runtime import api

    described = []
    real = launch.chunk_descriptors
    monkeypatch.setattr(launch, "chunk_descriptors",
                        lambda *a: described.append(1) or real(*a))
    flat = torch.randn(10 * 3 * 2 * 80 + 4).to(torch.float16)
    cu = torch.tensor([0, 3, 10], dtype=torch.int32)
    api.clear_decision_cache()
    for offset, through_descriptors in ((0, True), (4, False), (0, True)):
        q, k, v = flat[offset:offset + 10 * 3 * 2 * 80].view(10, 3, 2, 80).unbind(1)
        out = torch.full_like(q, float("nan"))
        vision_attention(q, k, v, cu, 7, out=out, config=TMA_WIDE)
        assert bool(described) == through_descriptors
        described.clear()
        assert relative_error(out, reference_attention(q, k, v, cu)) < TOLERANCE[torch.float16]
    assert len(api._plans) == 2


def test_a_base_address_off_16_bytes_turns_the_split_wgmma_path_off(monkeypatch):
    """On Hopper, split head dims on wgmma need 16-byte rows: strides of 16 bytes and base
    addresses on 16-byte boundaries. A view 4 elements into its storage gets the padded,
    pointer-load variant of the default; the plan cache tells the two apart."""
    from vitune.runtime import api
    from vitune.runtime.gpu import identity_for_key

    monkeypatch.setattr(api, "device_gpu", lambda device: identity_for_key("h100"))
    launched = []
    monkeypatch.setattr(api, "run_launch", lambda launch, q, k, v, out, cu, **kw:
                        launched.append(launch.config) or out)
    api.clear_decision_cache()
    flat = torch.randn(10 * 3 * 2 * 80 + 4).to(torch.float16)
    cu = torch.tensor([0, 3, 10], dtype=torch.int32)
    for offset in (0, 4, 0):
        q, k, v = flat[offset:offset + 10 * 3 * 2 * 80].view(10, 3, 2, 80).unbind(1)
        vision_attention(q, k, v, cu, 4096)  # (max_seqlen: full attention's default)
    aligned, off, again = launched
    assert aligned.head_split and aligned.tma and aligned == again
    assert not off.head_split and not off.tma
    assert check_config(off, 80, torch.float16, HOPPER) is None
    assert len(api._plans) == 2
    api.clear_decision_cache()
