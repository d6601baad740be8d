"""Tuning presets (workloads from real vision towers) and the buckets they map to."""

from __future__ import annotations

from dataclasses import dataclass

from vitune.bench.workloads import Workload, qwen_full_seqlen, qwen_window_seqlens
from vitune.runtime.schema import bucket_key


@dataclass(frozen=True)
class Bucket:
    """What changes the best config: head_dim, dtype, regime and a length (nearest lookup)."""

    head_dim: int
    dtype: str
    regime: str
    seqlen: int
    rotary: bool = False  # tuned with the rotary embedding fused (a transformers tower's call)

    @property
    def key(self) -> str:
        return bucket_key(self.head_dim, self.dtype, self.regime, self.seqlen, self.rotary)


def bucket_of(w: Workload) -> Bucket:
    return Bucket(w.head_dim, w.dtype, w.regime, w.max_seqlen, w.rotary)


def _qwen25_vl() -> tuple[Workload, ...]:
    windows = qwen_window_seqlens(1080, 1920) + qwen_window_seqlens(1024, 1024)
    return (
        Workload("qwen2.5-vl full 448x448 x8", (qwen_full_seqlen(448, 448),) * 8),
        Workload("qwen2.5-vl full 1024x1024 x2", (qwen_full_seqlen(1024, 1024),) * 2),
        Workload("qwen2.5-vl full 1920x1080", (qwen_full_seqlen(1080, 1920),)),
        Workload("qwen2.5-vl windows 1920x1080+1024x1024", windows),
    )


def _qwen3_vl() -> tuple[Workload, ...]:
    """Qwen3-VL's tower: full attention only, head_dim 72, 16-pixel patches merged 2x2."""
    def full(name: str, height: int, width: int, images: int) -> Workload:
        return Workload(f"qwen3-vl full {name}",
                        (qwen_full_seqlen(height, width, patch=16),) * images, head_dim=72)
    return (full("448x448 x8", 448, 448, 8), full("1024x1024 x2", 1024, 1024, 2),
            full("1920x1080", 1080, 1920, 1))


def _heads() -> tuple[Workload, ...]:
    windows = qwen_window_seqlens(1024, 1024)
    return tuple(
        w for d in (64, 72, 80, 88, 128)
        for w in (Workload(f"d{d} windows", windows, head_dim=d),
                  Workload(f"d{d} full 2x4096", (4096, 4096), head_dim=d))
    )


# Interpreter-sized: seconds per trial on a CPU. For `--interpret` and the tests.
TINY = (
    Workload("tiny windows", (16, 16, 8, 16, 4, 0, 16), heads=1, head_dim=32, dtype="float16"),
    Workload("tiny full", (150, 23), heads=1, head_dim=32, dtype="float16"),
)

TUNE_PRESETS: dict[str, tuple[Workload, ...]] = {
    "qwen2.5-vl": _qwen25_vl(),
    "qwen3-vl": _qwen3_vl(),
    "heads": _heads(),
    "tiny": TINY,
}


def custom_workloads(head_dims: list[int], dtype: str, seqlens: list[int],
                     heads: int = 16) -> tuple[Workload, ...]:
    """--head-dim/--dtype/--seqlens: one workload per head_dim over the given segments."""
    return tuple(Workload(f"custom d{d}", tuple(seqlens), heads=heads, head_dim=d, dtype=dtype)
                 for d in head_dims)
