"""The search space and its validity rules (no kernel launches)."""

import dataclasses

import pytest
import torch

from vitune.kernels.arch import ARCHS, HOPPER, arch_for_capability
from vitune.kernels.vision_attn.space import (
    HEAD_DIMS,
    SEARCH_SPACE,
    KernelConfig,
    check_config,
    chunk_offsets,
    default_config,
    head_chunks,
    padded_head_dim,
    valid_configs,
)


@pytest.mark.parametrize(
    ("head_dim", "split", "expected"),
    [(80, True, (64, 16, 0)), (72, True, (64, 16, 0)), (88, True, (64, 32, 0)),
     (96, True, (64, 32, 0)), (112, True, (64, 32, 16)), (128, True, (128, 0, 0)),
     (240, True, (128, 64, 64)), (40, True, (32, 16, 0)), (80, False, (128, 0, 0)),
     (72, False, (128, 0, 0)), (32, False, (32, 0, 0))],
)
def test_head_chunks(head_dim, split, expected):
    assert head_chunks(head_dim, split) == expected


@pytest.mark.parametrize("head_dim", HEAD_DIMS)
def test_head_chunks_cover_head_dim_with_little_waste(head_dim):
    chunks = head_chunks(head_dim, True)
    assert all(c == 0 or (c >= 16 and c & (c - 1) == 0) for c in chunks)
    width = sum(chunks)
    assert width >= head_dim
    # split never pads more than the power-of-two padding does, and at 72/80/88 far less
    assert width <= padded_head_dim(head_dim, False)
    if head_dim in (72, 80, 88):
        assert (width - head_dim) / width <= 0.125


def test_every_space_value_is_reachable_and_configs_are_unique():
    configs = list(valid_configs(80, torch.bfloat16, HOPPER))
    assert len(configs) == len(set(configs))
    for name, choices in SEARCH_SPACE.items():
        assert {getattr(c, name) for c in configs} == set(choices), name


def test_power_of_two_head_dims_drop_the_redundant_split_choice():
    configs = list(valid_configs(64, torch.float16, HOPPER))
    assert configs and all(c.head_split for c in configs)


def test_rules_reject_over_budget_configs():
    big = KernelConfig(block_m=256, block_n=128, num_warps=8, num_stages=4, head_split=False)
    reason = check_config(big, 256, torch.float32, HOPPER)
    assert reason is not None and "shared memory" in reason
    idle = KernelConfig(block_m=32, block_n=32, num_warps=8, num_stages=1)
    assert "warps idle" in check_config(idle, 64, torch.float16, HOPPER)
    assert check_config(KernelConfig(block_m=256, block_n=128, num_warps=4, num_stages=1),
                        128, torch.float16, HOPPER).startswith("needs ~")


def test_rules_reject_values_outside_the_space():
    assert "block_m" in check_config(KernelConfig(block_m=48), 64, torch.float16, HOPPER)
    assert "num_warps" in check_config(KernelConfig(num_warps=3), 64, torch.float16, HOPPER)
    assert "head_split" in check_config(KernelConfig(head_split=1), 64, torch.float16, HOPPER)
    assert "head_dim" in check_config(KernelConfig(), 60, torch.float16, HOPPER)


def test_consumer_parts_have_smaller_budgets():
    ada = arch_for_capability((8, 9))
    assert ada.smem_per_block < HOPPER.smem_per_block
    assert len(list(valid_configs(128, torch.float16, ada))) < len(
        list(valid_configs(128, torch.float16, HOPPER)))
    with pytest.raises(ValueError, match="sm_80"):
        arch_for_capability((7, 5))


@pytest.mark.parametrize("arch", list(ARCHS.values()), ids=lambda a: a.name)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("mean_len", [None, 64.0, 5000.0])
def test_default_config_is_valid_everywhere(arch, dtype, mean_len):
    for head_dim in HEAD_DIMS:
        if dtype == torch.float32 and arch.smem_per_block < 100 * 1024 and head_dim > 224:
            # fp32 tiles of the widest heads do not fit 99 KB parts: a clear error instead
            with pytest.raises(ValueError, match="no valid config"):
                default_config(head_dim, dtype, arch, mean_len)
            continue
        cfg = default_config(head_dim, dtype, arch, mean_len)
        assert check_config(cfg, head_dim, dtype, arch) is None


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown keys"):
        KernelConfig.from_dict({"block_m": 64, "BLOCK_K": 3})
    assert KernelConfig.from_dict(KernelConfig().to_dict()) == KernelConfig()


@pytest.mark.parametrize("head_dim", HEAD_DIMS)
@pytest.mark.parametrize("split", [True, False])
def test_chunks_tile_the_head_dim_without_reading_past_it(head_dim, split):
    chunks, offsets = head_chunks(head_dim, split), chunk_offsets(head_dim, split)
    covered = set()
    for width, offset in zip(chunks, offsets, strict=True):
        if width:
            covered |= set(range(offset, offset + width))
    assert covered >= set(range(head_dim))
    if split:  # no column mask anywhere: every chunk lies inside the head dim
        assert max(covered) == head_dim - 1


@pytest.mark.parametrize("head_dim", [72, 88])
def test_split_odd_head_dims_on_hopper_need_pipelining_and_8_element_strides(head_dim):
    """Measured: split head dims 72/88 on wgmma (>= 4 warps, block_m >= 64) are right with
    strides in units of 8 except 88 with one stage; 2 warps (mma v2) are right everywhere.
    So both defaults run them unpadded."""
    from vitune.kernels.vision_attn.space import default_config, needs_aligned_strides

    two_warps = KernelConfig(block_m=64, block_n=32, num_warps=2, num_stages=1)
    four_warps = KernelConfig(block_m=64, block_n=32, num_warps=4, num_stages=2)
    assert check_config(two_warps, head_dim, torch.bfloat16, HOPPER) is None
    assert not needs_aligned_strides(two_warps, head_dim, HOPPER)
    assert check_config(four_warps, head_dim, torch.bfloat16, HOPPER) is None
    assert needs_aligned_strides(four_warps, head_dim, HOPPER)
    one_stage = KernelConfig(block_m=64, block_n=32, num_warps=4, num_stages=1)
    assert "num_stages >= 2" in check_config(one_stage, head_dim, torch.bfloat16, HOPPER)
    for length in (64, 4096):
        assert default_config(head_dim, torch.bfloat16, HOPPER, length).head_split


def test_window_kernel_configs_take_one_form():
    """The window kernel has keys in the query tile, heads fastest and no descriptors: any
    other form is refused with the reason, and canonical() brings a sampled one to it."""
    window = KernelConfig(block_m=64, block_n=64, num_warps=4, num_stages=3,
                          heads_fastest=True, windows=True)
    assert check_config(window, 80, torch.bfloat16, HOPPER) is None
    odd = dataclasses.replace(window, block_n=32, heads_fastest=False, tma=True)
    assert "block_n must equal block_m" in check_config(odd, 80, torch.bfloat16, HOPPER)
    assert "heads fastest" in check_config(dataclasses.replace(window, tma=True), 80,
                                           torch.bfloat16, HOPPER)
    assert odd.canonical(80) == window
    assert dataclasses.replace(window, head_split=False).canonical(64) == window
    assert window.short() == "win-m64w4s3-split"
    with_windows = set(valid_configs(80, torch.bfloat16, HOPPER))
    without = set(valid_configs(80, torch.bfloat16, HOPPER, windows=False))
    assert window in with_windows and without < with_windows
    assert {c for c in with_windows if c.windows} == with_windows - without
    assert all(c.canonical(80) == c for c in with_windows)


def test_the_window_default_is_the_window_kernel_and_full_stays_on_tiles():
    assert default_config(80, torch.bfloat16, HOPPER, 64).windows
    assert not default_config(80, torch.bfloat16, HOPPER, 4096).windows
    assert not default_config(80, torch.bfloat16, HOPPER, None).windows


def test_a_misaligned_layout_gets_a_config_the_rules_admit():
    """Split head dims on wgmma need aligned strides; for a layout without them the config
    is padded, and where the padded variant would exceed the shared-memory budget, the
    nearest config that takes any layout and passes the rules is used instead."""
    from vitune.kernels.vision_attn.space import fit_to_layout, needs_aligned_strides

    usual = KernelConfig(block_m=128, block_n=64, num_warps=4, num_stages=3, tma=True)
    assert fit_to_layout(usual, 80, torch.bfloat16, HOPPER, layout_aligned=True) == usual
    padded = fit_to_layout(usual, 80, torch.bfloat16, HOPPER, layout_aligned=False)
    assert padded == dataclasses.replace(usual, head_split=False, tma=False)
    big = KernelConfig(block_m=256, block_n=128, num_warps=8, num_stages=2)
    assert check_config(big, 80, torch.bfloat16, HOPPER) is None
    assert "shared memory" in check_config(dataclasses.replace(big, head_split=False), 80,
                                           torch.bfloat16, HOPPER)
    fitted = fit_to_layout(big, 80, torch.bfloat16, HOPPER, layout_aligned=False)
    assert check_config(fitted, 80, torch.bfloat16, HOPPER) is None
    assert not needs_aligned_strides(fitted, 80, HOPPER)
