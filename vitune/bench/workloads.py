"""Workload shapes drawn from real vision towers, how to build their inputs, and the
benchmark presets (`vitune bench --preset`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vitune.kernels.vision_attn.space import WINDOW_MAX_SEQLEN


@dataclass(frozen=True)
class Workload:
    """One attention call: segment lengths (packed into one tensor), heads, head_dim, dtype."""

    name: str
    seqlens: tuple[int, ...]
    heads: int = 16
    head_dim: int = 80
    dtype: str = "bfloat16"
    rotary: bool = False  # q and k rotated first (Qwen-VL rotary; fused in vitune's kernels)

    @property
    def total_tokens(self) -> int:
        return sum(self.seqlens)

    @property
    def max_seqlen(self) -> int:
        return max(self.seqlens, default=0)

    @property
    def regime(self) -> str:
        """'window' for many short segments (memory bound), 'full' otherwise."""
        return "window" if self.max_seqlen <= WINDOW_MAX_SEQLEN else "full"

    @property
    def equal_lengths(self) -> bool:
        return len(set(self.seqlens)) == 1

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def useful_flops(self) -> float:
        """4 * L^2 * head_dim per head and segment: no credit for padding or masked work."""
        return 4.0 * self.heads * self.head_dim * math.fsum(n * n for n in self.seqlens)

    def tflops(self, median_ms: float) -> float:
        """Useful TFLOP/s of one call that took median_ms."""
        return self.useful_flops() / (median_ms * 1e-3) / 1e12

    def min_bytes(self) -> int:
        """q, k, v read once and o written once."""
        elt = torch.tensor([], dtype=self.torch_dtype).element_size()
        return 4 * self.total_tokens * self.heads * self.head_dim * elt

    def cu_seqlens(self, device: torch.device | str) -> torch.Tensor:
        bounds = [0]
        for n in self.seqlens:
            bounds.append(bounds[-1] + n)
        return torch.tensor(bounds, dtype=torch.int32, device=device)

    def make_qkv(self, device: torch.device | str, seed: int = 0
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v as views of one fused [T, 3, H, D] tensor, as a vision block's qkv
        projection leaves them (strided token axis, no copies). Random normal, never zeros;
        drawn on the device itself (on the CPU, 42M values of 2 x 5476 tokens take ~0.4 s,
        paid again by every shape a tuner's crown re-times). On the meta device: the same
        shapes and strides without memory, to compile for (vitune.kernels.compile_only)."""
        shape = (self.total_tokens, 3, self.heads, self.head_dim)
        if torch.device(device).type == "meta":
            qkv = torch.empty(shape, dtype=self.torch_dtype, device=device)
        else:
            gen = torch.Generator(device=device).manual_seed(seed)
            qkv = torch.randn(shape, generator=gen, device=device).to(dtype=self.torch_dtype)
        return qkv[:, 0], qkv[:, 1], qkv[:, 2]

    def make_rotary(self, device: torch.device | str, seed: int = 1
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin [T, head_dim] in fp32 as the Qwen-VL towers build them: angles of
        per-token positions times inverse frequencies, the half repeated (rotate-half)."""
        gen = torch.Generator(device=device).manual_seed(seed)
        half = self.head_dim // 2
        positions = torch.randint(0, 128, (self.total_tokens, 1), generator=gen,
                                  device=device).float()
        inv_freq = 1e4 ** (-torch.arange(half, device=device, dtype=torch.float32) / half)
        angles = (positions * inv_freq).repeat(1, 2)
        return angles.cos(), angles.sin()


def qwen_window_seqlens(height: int, width: int, patch: int = 14, merge: int = 2,
                        window_px: int = 112) -> tuple[int, ...]:
    """Qwen2.5-VL's window-attention segments for one image, resized as its processor does
    (sides rounded to multiples of patch * merge): windows of window_px square over the grid
    of merged patches, each merged unit holding merge^2 tokens."""
    unit = patch * merge
    rows, cols = round(height / unit), round(width / unit)
    win = window_px // unit  # merged units per window side
    lengths = []
    for r0 in range(0, rows, win):
        for c0 in range(0, cols, win):
            units = (min(r0 + win, rows) - r0) * (min(c0 + win, cols) - c0)
            lengths.append(units * merge * merge)
    return tuple(lengths)


def qwen_full_seqlen(height: int, width: int, patch: int = 14, merge: int = 2) -> int:
    unit = patch * merge
    return round(height / unit) * round(width / unit) * merge * merge


# The shapes of the measured peer table (CONTEXT.md), bf16, 16 heads.
CONTEXT_WORKLOADS = (
    Workload("1x4096 d80", (4096,)),
    Workload("8x1024 d80", (1024,) * 8),
    Workload("1x16384 d80", (16384,)),
    Workload("2x5476 d80 (qwen full)", (qwen_full_seqlen(1024, 1024),) * 2),
    Workload("qwen windows 1920x1080 d80", qwen_window_seqlens(1080, 1920)),
    Workload("1x4096 d128", (4096,), head_dim=128),
    Workload("4x1024 d64", (1024,) * 4, head_dim=64),
    Workload("1x4096 d72", (4096,), head_dim=72),
    Workload("1x4096 d88", (4096,), head_dim=88),
)



def _length_sweep() -> tuple[Workload, ...]:
    """Throughput curves: per vision head_dim, full attention over 16k tokens cut into
    segments of 256 to 16384, plus Qwen's 64-token windows of a 1920x1080 image."""
    workloads = []
    for d in (64, 72, 80, 88, 128):
        workloads.append(Workload(f"windows 1920x1080 d{d}", qwen_window_seqlens(1080, 1920),
                                  head_dim=d))
        for length in (256, 1024, 4096, 16384):
            workloads.append(Workload(f"{16384 // length}x{length} d{d}",
                                      (length,) * (16384 // length), head_dim=d))
    return tuple(workloads)


# The four-image batch of the encoder benchmark (1092x1932, 1036x1036, 448x448 x 2: 18,288
# tokens) and Qwen3-VL's head dim: the fused-rotary cost in both regimes, d80 and d72.
FOUR_IMAGES = ((1092, 1932), (1036, 1036), (448, 448), (448, 448))
ROTARY_WORKLOADS = tuple(
    workload for d in (80, 72) for workload in (
        Workload(f"4 images full d{d}", tuple(qwen_full_seqlen(h, w) for h, w in FOUR_IMAGES),
                 head_dim=d),
        Workload(f"4 images windows d{d}",
                 tuple(n for h, w in FOUR_IMAGES for n in qwen_window_seqlens(h, w)),
                 head_dim=d)))

PRESETS: dict[str, tuple[Workload, ...]] = {"context": CONTEXT_WORKLOADS,
                                            "lengths": _length_sweep(),
                                            "rotary": ROTARY_WORKLOADS}
