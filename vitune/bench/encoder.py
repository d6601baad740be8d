"""End-to-end vision-encoder benchmark with Qwen2.5-VL's shapes and random weights.

32 blocks of hidden 1280, 16 heads of 80, gated SiLU MLP of 3420, RMSNorm; blocks 7, 15,
23 and 31 attend over each whole image, the others inside 112 x 112 px windows (64 tokens);
tokens are in window order, as Qwen2.5-VL arranges them. The patch embedding is one linear
layer over 2 x 14 x 14 x 3 pixels; rotary position embeddings and the final patch merger are
left out (they cost the same for every attention backend). No downloads.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vitune.runtime.api import vision_attention
from vitune.runtime.backends import BackendUnavailable
from vitune.tuner.peers import sglang_style_config
from vitune.tuner.workloads import qwen_full_seqlen, qwen_window_seqlens

AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int],
                       torch.Tensor]


@dataclass(frozen=True)
class EncoderShape:
    depth: int = 32
    hidden: int = 1280
    heads: int = 16
    mlp: int = 3420
    full_blocks: tuple[int, ...] = (7, 15, 23, 31)
    patch_pixels: int = 2 * 14 * 14 * 3

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


QWEN25_VL = EncoderShape()


class Block(nn.Module):
    def __init__(self, shape: EncoderShape) -> None:
        super().__init__()
        self.heads = shape.heads
        self.norm1 = nn.RMSNorm(shape.hidden, eps=1e-6)
        self.qkv = nn.Linear(shape.hidden, 3 * shape.hidden)
        self.proj = nn.Linear(shape.hidden, shape.hidden)
        self.norm2 = nn.RMSNorm(shape.hidden, eps=1e-6)
        self.gate = nn.Linear(shape.hidden, shape.mlp)
        self.up = nn.Linear(shape.hidden, shape.mlp)
        self.down = nn.Linear(shape.mlp, shape.hidden)

    def forward(self, x: torch.Tensor, cu: torch.Tensor, max_len: int,
                attn: AttentionFn) -> torch.Tensor:
        qkv = self.qkv(self.norm1(x)).unflatten(-1, (3, self.heads, -1))
        q, k, v = qkv.unbind(1)  # strided [T, H, D] views of the fused projection
        x = x + self.proj(attn(q, k, v, cu, max_len).flatten(1))
        h = self.norm2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class VisionEncoder(nn.Module):
    def __init__(self, shape: EncoderShape = QWEN25_VL) -> None:
        super().__init__()
        self.shape = shape
        self.embed = nn.Linear(shape.patch_pixels, shape.hidden, bias=False)
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.depth))

    def forward(self, pixels: torch.Tensor, segments: ImageSegments,
                attn: AttentionFn) -> torch.Tensor:
        x = self.embed(pixels)
        for i, block in enumerate(self.blocks):
            full = i in self.shape.full_blocks
            cu = segments.full_cu if full else segments.window_cu
            x = block(x, cu, segments.full_max if full else segments.window_max, attn)
        return x


@dataclass
class ImageSegments:
    """cu_seqlens of a batch of images for the full and the window layers (host-known
    maxima, as a serving engine computes them once per batch, not per layer)."""

    full_cu: torch.Tensor
    full_max: int
    window_cu: torch.Tensor
    window_max: int
    tokens: int

    @classmethod
    def for_images(cls, sizes: list[tuple[int, int]], device) -> ImageSegments:
        full = [qwen_full_seqlen(h, w) for h, w in sizes]
        windows = [n for h, w in sizes for n in qwen_window_seqlens(h, w)]

        def cu(lengths):
            bounds = torch.tensor([0, *lengths], dtype=torch.int64).cumsum(0)
            return bounds.to(device=device, dtype=torch.int32)
        return cls(cu(full), max(full), cu(windows), max(windows), sum(full))


def masked_sdpa(q, k, v, cu, max_len):
    """The old serving default: one [T, T] block-diagonal mask and masked SDPA (the mask is
    built on the device here, which is kinder to it than a host loop)."""
    return vision_attention(q, k, v, cu, None, backend="sdpa")


def varlen(q, k, v, cu, max_len):
    return vision_attention(q, k, v, cu, max_len, backend="varlen")


def sglang_fixed(q, k, v, cu, max_len):
    return vision_attention(q, k, v, cu, max_len, config=sglang_style_config(q.shape[-1]))


def vitune_auto(q, k, v, cu, max_len):
    return vision_attention(q, k, v, cu, max_len)


def no_attention(q, k, v, cu, max_len):
    """Not a backend: attention skipped (v passed through), so the encoder's time without
    attention is measured and each backend's attention time is its excess over it."""
    return v


ENCODER_BACKENDS: dict[str, AttentionFn] = {
    "sdpa-masked": masked_sdpa,
    "varlen_attn": varlen,
    "sglang-style-fixed": sglang_fixed,
    "vitune-auto": vitune_auto,
}
# 12,308 tokens: masked SDPA's [T, T] mask (about 64 bytes per token pair in its math path)
# must fit on an 80 GB card, or the old default could not be measured at all.
MIXED_IMAGES = [(1024, 1024), (720, 1280), (448, 448), (448, 448)]


@torch.inference_mode()
def bench_encoder(sizes: list[tuple[int, int]], backends: list[str], device: torch.device,
                  dtype: torch.dtype = torch.bfloat16, shape: EncoderShape = QWEN25_VL,
                  reps: int = 10, seed: int = 0) -> list[dict]:
    """Input tokens/s of the whole encoder per attention backend on one batch of images;
    every backend's output is compared with the first one's."""
    torch.manual_seed(seed)
    model = VisionEncoder(shape).to(device=device, dtype=dtype).eval()
    segments = ImageSegments.for_images(sizes, device)
    pixels = torch.randn(segments.tokens, shape.patch_pixels, device=device, dtype=dtype)
    rows, reference = [], None
    for name in backends:
        attn = ENCODER_BACKENDS[name]
        try:
            out = model(pixels, segments, attn)
        except BackendUnavailable as exc:  # reported, not timed
            rows.append({"backend": name, "status": "n/a", "reason": str(exc)})
            continue
        except torch.OutOfMemoryError as exc:  # e.g. masked SDPA's [T, T] mask
            rows.append({"backend": name, "status": "oom", "reason": str(exc).split(".")[0]})
            torch.cuda.empty_cache()
            continue
        rel = None
        if reference is None:
            reference = out.float()
        else:
            rel = float((out.float() - reference).norm() / reference.norm())
        times = _time(lambda attn=attn: model(pixels, segments, attn), device, reps)
        median = statistics.median(times)
        rows.append({"backend": name, "status": "ok", "median_ms": median,
                     "tokens_per_s": segments.tokens / (median * 1e-3),
                     "rel_diff_vs_first": rel, "tokens": segments.tokens,
                     "images": [list(s) for s in sizes]})
    # The same encoder with attention skipped: the floor no attention backend can beat.
    times = _time(lambda: model(pixels, segments, no_attention), device, reps)
    floor = statistics.median(times)
    rows.append({"backend": "no-attention", "status": "bound", "median_ms": floor,
                 "tokens_per_s": segments.tokens / (floor * 1e-3), "tokens": segments.tokens,
                 "images": [list(s) for s in sizes]})
    for row in rows:
        if row["status"] == "ok":
            row["attention_ms"] = row["median_ms"] - floor
    return rows


def _time(fn, device: torch.device, reps: int) -> list[float]:
    fn()  # warm-up (compiles, allocator)
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return times
