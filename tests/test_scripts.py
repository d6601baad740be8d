"""The helper scripts' pure parts (their GPU parts run on the lent machine)."""

import sys
from pathlib import Path

import pytest
import torch

from vitune.kernels.vision_attn.space import valid_configs
from vitune.runtime.gpu import identity_for_key

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))


def test_timing_spread_reads_back_every_config_name():
    from timing_spread import parse_short

    for head_dim in (80, 128):
        configs = list(valid_configs(head_dim, torch.bfloat16, identity_for_key("h100").arch))
        assert configs and all(parse_short(c.short()) == c for c in configs)


def test_ab_specialize_variant_is_wired_in_and_computes_the_same(monkeypatch):
    """The A/B's rebuilt kernel (specialised on counts, as Triton does by default) replaces
    the launcher's and gives the reference's result (here through the interpreter)."""
    from ab_specialize import SEGMENT_COUNTS, TOKENS, segment_workloads, use_variant
    from conftest import make_packed

    from vitune.kernels.vision_attn import kernel, launch
    from vitune.kernels.vision_attn.launch import launch_vision_attention
    from vitune.kernels.vision_attn.reference import TOLERANCE, reference_attention, relative_error
    from vitune.kernels.vision_attn.space import KernelConfig

    assert [sum(w.seqlens) for w in segment_workloads(80)] == [TOKENS] * len(SEGMENT_COUNTS)
    assert [len(w.seqlens) for w in segment_workloads(80)] == list(SEGMENT_COUNTS)
    monkeypatch.setattr(launch, "vision_attn_fwd", launch.vision_attn_fwd)  # (restored)
    use_variant("specialised")
    assert launch.vision_attn_fwd is not kernel.vision_attn_fwd
    q, k, v, cu = make_packed([9, 16, 1], heads=2, head_dim=32, dtype=torch.float32)
    out = torch.full_like(q, float("nan"))
    cfg = KernelConfig(block_m=16, block_n=16, num_warps=4, num_stages=1)
    launch_vision_attention(q, k, v, out, cu, 32 ** -0.5, cfg)
    assert relative_error(out, reference_attention(q, k, v, cu)) < TOLERANCE[torch.float32]


def test_ab_windows_candidates_compute_the_reference_result():
    """The window A/B's candidate configs are distinct window-kernel configs the rules
    admit on an H100, and a few of them (through the interpreter) give the reference's
    result."""
    import ab_windows
    from conftest import make_packed

    from vitune.kernels.vision_attn.launch import kernel_is_interpreted, launch_vision_attention
    from vitune.kernels.vision_attn.reference import TOLERANCE, reference_attention, relative_error
    from vitune.kernels.vision_attn.space import check_config

    if torch.cuda.is_available() or not kernel_is_interpreted():
        pytest.skip("CPU lane")
    configs = ab_windows.window_configs()
    assert len(set(configs)) == len(configs) == 12 and all(c.windows for c in configs)
    hopper = identity_for_key("h100").arch
    assert all(check_config(c, 80, torch.bfloat16, hopper) is None for c in configs)
    q, k, v, cu = make_packed([64, 20, 64], heads=3, head_dim=32, dtype=torch.float16)
    ref = reference_attention(q, k, v, cu)
    for cfg in (configs[0], configs[-1]):
        out = torch.full_like(q, float("nan"))
        launch_vision_attention(q, k, v, out, cu, 32 ** -0.5, cfg)
        assert relative_error(out, ref) < TOLERANCE[torch.float16], cfg.short()
