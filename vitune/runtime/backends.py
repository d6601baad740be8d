"""Non-Triton backends that `vision_attention(..., backend=...)` can run: PyTorch SDPA,
torch's varlen_attn and flash-attn. Each raises BackendUnavailable (a clear message)
instead of silently running something else."""

from __future__ import annotations

import importlib
from functools import partial

import torch
import torch.nn.functional as F

# sdpa lets torch pick its kernel; sdpa_cudnn / sdpa_flash pin one (what the tuner measured).
BACKENDS = ("auto", "triton", "sdpa", "sdpa_cudnn", "sdpa_flash", "varlen", "flash_attn")


class BackendUnavailable(RuntimeError):
    """The backend asked for cannot run here (not installed, wrong device, missing input)."""


def equal_segments(q: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int | None) -> bool:
    """All segments have max_seqlen tokens, known from shapes alone (no sync): n segments of
    at most max_seqlen tokens that add up to n * max_seqlen must all be that long."""
    n = cu_seqlens.numel() - 1
    return max_seqlen is not None and max_seqlen > 0 and n * max_seqlen == q.shape[0]


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
            batched = [x.unflatten(0, (n, max_seqlen)).transpose(1, 2) for x in (q, k, v)]
        if kernel is None:
            result = F.scaled_dot_product_attention(*batched, scale=scale)
        else:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            with sdpa_kernel(getattr(SDPBackend, kernel)):
                result = F.scaled_dot_product_attention(*batched, scale=scale)
        result = result.transpose(1, 2).reshape(q.shape)
    elif kernel is not None:
        raise BackendUnavailable(f"SDPA's {kernel} kernel takes equal segment lengths only "
                                 "(packed input needs max_seqlen * segments == tokens)")
    else:
        tokens = torch.arange(q.shape[0], device=q.device, dtype=cu_seqlens.dtype)
        segment = torch.searchsorted(cu_seqlens, tokens, right=True)
        mask = segment[:, None] == segment[None, :]
        heads_first = [x.transpose(0, 1) for x in (q, k, v)]  # [H, T, D]
        result = F.scaled_dot_product_attention(*heads_first, attn_mask=mask, scale=scale)
        result = result.transpose(0, 1)
    if out is None:
        return result.contiguous()
    return out.copy_(result)


def _varlen_signature(module: str, name: str, needs: str, scale_arg: str):
    def run(q, k, v, cu_seqlens, max_seqlen, scale, out):
        if cu_seqlens is None:
            raise BackendUnavailable(f"backend {needs!r} takes the packed layout only")
        if max_seqlen is None:
            raise BackendUnavailable(f"backend {needs!r} needs max_seqlen (vitune does not "
                                     "synchronise to compute it)")
        if q.device.type != "cuda":
            raise BackendUnavailable(f"backend {needs!r} runs on CUDA tensors only")
        try:
            fn = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            raise BackendUnavailable(f"backend {needs!r} is not available: {module}.{name} "
                                     "cannot be imported") from None
        result = fn(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen,
                    **{scale_arg: scale})
        result = result[0] if isinstance(result, tuple) else result
        return result if out is None else out.copy_(result)
    return run


run_varlen = _varlen_signature("torch.nn.attention.varlen", "varlen_attn", "varlen", "scale")
run_flash_attn = _varlen_signature("flash_attn", "flash_attn_varlen_func", "flash_attn",
                                   "softmax_scale")
RUNNERS = {
    "sdpa": run_sdpa,
    "sdpa_cudnn": partial(run_sdpa, kernel="CUDNN_ATTENTION"),
    "sdpa_flash": partial(run_sdpa, kernel="FLASH_ATTENTION"),
    "varlen": run_varlen,
    "flash_attn": run_flash_attn,
}
# The tuner's peer names -> the backend that reproduces them at run time.
PEER_BACKENDS = {"sdpa-cudnn": "sdpa_cudnn", "sdpa-flash": "sdpa_flash",
                 "varlen_attn": "varlen", "flash_attn": "flash_attn"}
