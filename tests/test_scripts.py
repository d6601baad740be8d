"""The helper scripts' pure parts (their GPU parts run on the lent machine)."""

import sys
from pathlib import Path

import torch

from vitune.kernels.vision_attn.space import valid_configs
from vitune.runtime.gpu import identity_for_key

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))


def test_timing_spread_reads_back_every_config_name():
    from timing_spread import parse_short

    for head_dim in (80, 128):
        configs = list(valid_configs(head_dim, torch.bfloat16, identity_for_key("h100").arch))
        assert configs and all(parse_short(c.short()) == c for c in configs)
