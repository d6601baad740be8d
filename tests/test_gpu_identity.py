"""Canonical GPU keys and architecture from faked device names and capabilities."""

import pytest

from vitune.runtime.gpu import canonical_gpu_key, identify


@pytest.mark.parametrize(
    ("name", "key"),
    [("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA H100 PCIe", "h100_pcie"),
     ("NVIDIA H100 NVL", "h100_nvl"), ("NVIDIA H200", "h200"), ("NVIDIA H200 NVL", "h200_nvl"),
     ("NVIDIA GB200", "gb200"), ("NVIDIA B200", "b200"), ("NVIDIA A100-SXM4-80GB", "a100"),
     ("NVIDIA GH200 480GB", "gh200"),
     ("NVIDIA RTX 6000 Ada Generation", "rtx_6000_ada_generation")],
)
def test_canonical_keys(name, key):
    assert canonical_gpu_key(name) == key


def test_architecture_follows_capability_not_name():
    assert identify("NVIDIA GB200", (10, 0)).arch.name == "blackwell"
    assert identify("NVIDIA H200", (9, 0)).arch.name == "hopper"
    assert identify("Some Future GPU", (9, 0)).arch.name == "hopper"
    assert identify("NVIDIA L4", (8, 9)).arch.name == "ampere_consumer"
