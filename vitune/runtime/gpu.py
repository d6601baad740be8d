"""GPU identity: a canonical key from the device name and compute capability.

Keys name a product, never an exact marketing string: "NVIDIA H100 80GB HBM3" -> h100,
"NVIDIA H200" -> h200, "NVIDIA GB200" -> gb200. Variants that differ in bandwidth or clocks
(H100 PCIe, H100 NVL, H200 NVL) get keys of their own; unknown GPUs get a sanitised name and
fall back by architecture wherever configs are looked up.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vitune.kernels.arch import INTERPRETER, ArchSpec, arch_for_capability

if TYPE_CHECKING:
    import torch

# (pattern on the lower-cased name, key), first match wins: longer product names first.
_PRODUCTS = (
    (r"\bgb300\b", "gb300"),
    (r"\bb300\b", "b300"),
    (r"\bgb200\b", "gb200"),
    (r"\bb200\b", "b200"),
    (r"\bgh200\b", "gh200"),
    (r"\bh200\b.*\bnvl\b", "h200_nvl"),
    (r"\bh200\b", "h200"),
    (r"\bh100\b.*\bnvl\b", "h100_nvl"),
    (r"\bh100\b.*\bpcie\b", "h100_pcie"),
    (r"\bh100\b", "h100"),
    (r"\bh800\b", "h800"),
    (r"\bh20\b", "h20"),
    (r"\ba100\b.*\bpcie\b", "a100_pcie"),
    (r"\ba100\b", "a100"),
    (r"\bl40s\b", "l40s"),
    (r"\bl4\b", "l4"),
)
INTERPRETER_KEY = "interpreter"


@dataclass(frozen=True)
class GpuIdentity:
    key: str  # canonical, e.g. "h100"
    name: str  # as the driver reports it
    capability: tuple[int, int] | None  # None for the Triton interpreter
    arch: ArchSpec

    @property
    def is_interpreter(self) -> bool:
        return self.key == INTERPRETER_KEY


def canonical_gpu_key(name: str) -> str:
    """Canonical key of a device name: a known product, else the sanitised name."""
    lowered = name.lower()
    for pattern, key in _PRODUCTS:
        if re.search(pattern, lowered):
            return key
    sanitised = re.sub(r"[^a-z0-9]+", "_", lowered.removeprefix("nvidia ")).strip("_")
    return sanitised or "unknown_gpu"


def identify(name: str, capability: tuple[int, int]) -> GpuIdentity:
    return GpuIdentity(canonical_gpu_key(name), name, capability, arch_for_capability(capability))


def interpreter_identity() -> GpuIdentity:
    return GpuIdentity(INTERPRETER_KEY, "cpu (triton interpreter)", None, INTERPRETER)


def detect_gpu(index: int | None = None) -> GpuIdentity | None:
    """Identity of the local CUDA device, or None when there is none."""
    import torch

    if not torch.cuda.is_available():
        return None
    index = torch.cuda.current_device() if index is None else index
    return identify(torch.cuda.get_device_name(index), torch.cuda.get_device_capability(index))


def device_gpu(device: torch.device) -> GpuIdentity:
    """Identity of the GPU holding the tensors; the interpreter's for CPU tensors."""
    if device.type != "cuda":
        return interpreter_identity()
    import torch

    return _cuda_gpu(device.index if device.index is not None else torch.cuda.current_device())


def device_arch(device: torch.device) -> ArchSpec:
    """Budgets of the GPU holding the tensors; the interpreter's for CPU tensors."""
    return device_gpu(device).arch


@functools.cache
def _cuda_gpu(index: int) -> GpuIdentity:
    import torch

    return identify(torch.cuda.get_device_name(index), torch.cuda.get_device_capability(index))


# Compute capability of known products, for naming a GPU that is not present (`vitune show
# --gpu h100`, tests); unknown keys are refused rather than guessed.
KNOWN_CAPABILITY = {
    "h100": (9, 0), "h100_pcie": (9, 0), "h100_nvl": (9, 0), "h200": (9, 0),
    "h200_nvl": (9, 0), "h800": (9, 0), "h20": (9, 0), "gh200": (9, 0),
    "b200": (10, 0), "gb200": (10, 0), "b300": (10, 3), "gb300": (10, 3),
    "a100": (8, 0), "a100_pcie": (8, 0), "l40s": (8, 9), "l4": (8, 9),
}


# Peak memory bandwidth in GB/s (the vendors' data sheets), for estimates where nothing was
# measured: what copying a result into a caller's out= buffer costs (vitune.runtime.selector).
MEMORY_GBPS = {
    "h100": 3350, "h100_pcie": 2000, "h100_nvl": 3900, "h200": 4800, "h200_nvl": 4800,
    "h800": 3350, "h20": 4000, "gh200": 4000, "b200": 8000, "gb200": 8000, "b300": 8000,
    "gb300": 8000, "a100": 2039, "a100_pcie": 1935, "l40s": 864, "l4": 300,
}


def identity_for_key(key: str) -> GpuIdentity:
    if key == INTERPRETER_KEY:
        return interpreter_identity()
    if key not in KNOWN_CAPABILITY:
        raise ValueError(f"unknown GPU key {key!r}; known: {sorted(KNOWN_CAPABILITY)}")
    capability = KNOWN_CAPABILITY[key]
    return GpuIdentity(key, key, capability, arch_for_capability(capability))
