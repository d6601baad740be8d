"""Adapters to the attention libraries besides vitune's kernel: PyTorch SDPA (the kernel
torch picks, or one pinned), torch's varlen_attn and flash-attn. The public call runs them
(`vision_attention(..., backend=...)`: RUNNERS), and the benchmarks and the tuner's crown
measure them (vitune.bench.backends) through the same functions. Each raises
BackendUnavailable (a clear message) instead of silently running something else. Their
names: vitune.runtime.backend_names."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from vitune.runtime.backend_names import CALL_BACKENDS

BACKENDS = CALL_BACKENDS  # (the names a call's backend= is checked against)


class BackendUnavailable(RuntimeError):
    """The backend asked for cannot run here (not installed, wrong device, missing input)."""


def equal_segments(q: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int | None) -> bool:
    """All segments have max_seqlen tokens, known from shapes alone (no sync): n segments of
    at most max_seqlen tokens that add up to n * max_seqlen must all be that long."""
    n = cu_seqlens.numel() - 1
    return max_seqlen is not None and max_seqlen > 0 and n * max_seqlen == q.shape[0]


def as_batches(x: torch.Tensor, segments: int, length: int) -> torch.Tensor:
    """Packed [T, H, D] of `segments` equal segments of `length` -> [B, H, L, D] for SDPA (a
    view, no copy)."""
    return x.unflatten(0, (segments, length)).transpose(1, 2)


def from_batches(x: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """SDPA's [B, H, L, D] result -> the packed or batched `shape` of q."""
    return x.transpose(1, 2).reshape(shape)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
         kernel: str | None = None, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """torch's scaled_dot_product_attention on [..., S, D] inputs, on its `kernel` (an
    SDPBackend name such as "CUDNN_ATTENTION") where one is named, else on torch's pick."""
    if kernel is None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(getattr(SDPBackend, kernel)):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)


def block_diagonal_mask(cu_seqlens: torch.Tensor, tokens: int) -> torch.Tensor:
    """[T, T] booleans, true where two tokens share a segment: O(T^2) memory."""
    positions = torch.arange(tokens, device=cu_seqlens.device, dtype=cu_seqlens.dtype)
    segment = torch.searchsorted(cu_seqlens, positions, right=True)
    return segment[:, None] == segment[None, :]


def run_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor | None,
             max_seqlen: int | None, scale: float, out: torch.Tensor | None,
             kernel: str | None = None) -> torch.Tensor:
    """Batched input and packed input of equal segments run as one batched SDPA call (views,
    no copies in). Other packed input runs with a [T, T] block-diagonal mask: O(T^2) time and
    memory, done only because it was asked for."""
    if cu_seqlens is None or equal_segments(q, cu_seqlens, max_seqlen):
        if cu_seqlens is None:
            batched = [x.transpose(1, 2) for x in (q, k, v)]  # [B, H, S, D]
        else:
            n = cu_seqlens.numel() - 1
            batched = [as_batches(x, n, max_seqlen) for x in (q, k, v)]
        result = from_batches(sdpa(*batched, scale, kernel), q.shape)
    elif kernel is not None:
        raise BackendUnavailable(f"SDPA's {kernel} kernel takes equal segment lengths only "
                                 "(packed input needs max_seqlen * segments == tokens)")
    else:
        mask = block_diagonal_mask(cu_seqlens, q.shape[0])
        heads_first = [x.transpose(0, 1) for x in (q, k, v)]  # [H, T, D]
        result = sdpa(*heads_first, scale, attn_mask=mask).transpose(0, 1)
    if out is None:
        return result.contiguous()
    return out.copy_(result)


# Backends with flash-attention's packed varlen signature:
# fn(q, k, v, cu_q, cu_k, max_q, max_k, <scale keyword>=scale) -> [T, H, D] (or a tuple)
VARLEN_KERNELS = {"varlen": ("torch.nn.attention.varlen", "varlen_attn", "scale"),
                  "flash_attn": ("flash_attn", "flash_attn_varlen_func", "softmax_scale")}


def varlen_function(backend: str) -> Callable[..., torch.Tensor]:
    """`backend`'s packed varlen kernel ("varlen": torch's varlen_attn; "flash_attn":
    flash-attn's) as fn(q, k, v, cu_seqlens, max_seqlen, scale) -> [T, H, D];
    BackendUnavailable where it cannot be imported."""
    module, name, scale_arg = VARLEN_KERNELS[backend]
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise BackendUnavailable(f"backend {backend!r} is not available: {module}.{name} "
                                 "cannot be imported") from None

    def run(q, k, v, cu_seqlens, max_seqlen, scale):
        result = fn(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen,
                    **{scale_arg: scale})
        return result[0] if isinstance(result, tuple) else result
    return run


def _varlen_runner(backend: str):
    def run(q, k, v, cu_seqlens, max_seqlen, scale, out):
        if cu_seqlens is None:
            raise BackendUnavailable(f"backend {backend!r} takes the packed layout only")
        if max_seqlen is None:
            raise BackendUnavailable(f"backend {backend!r} needs max_seqlen (vitune does not "
                                     "synchronise to compute it)")
        if q.device.type != "cuda":
            raise BackendUnavailable(f"backend {backend!r} runs on CUDA tensors only")
        result = varlen_function(backend)(q, k, v, cu_seqlens, max_seqlen, scale)
        return result if out is None else out.copy_(result)
    return run


RUNNERS = {
    "sdpa": run_sdpa,
    "sdpa_cudnn": partial(run_sdpa, kernel="CUDNN_ATTENTION"),
    "sdpa_flash": partial(run_sdpa, kernel="FLASH_ATTENTION"),
    "varlen": _varlen_runner("varlen"),
    "flash_attn": _varlen_runner("flash_attn"),
}
