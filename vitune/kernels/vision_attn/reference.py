"""Float reference for vision attention: plain torch, no Triton, one segment at a time."""

from __future__ import annotations

import torch


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        cu_seqlens: torch.Tensor | None = None, *, scale: float | None = None,
                        compute_dtype: torch.dtype = torch.float64,
                        rotary: tuple[torch.Tensor, torch.Tensor] | None = None
                        ) -> torch.Tensor:
    """softmax(q k^T * scale) v per segment (packed [T, H, D] with cu_seqlens) or per batch
    element (batched [B, S, H, D]), computed in `compute_dtype`; returns that dtype. With
    `rotary` = (cos, sin) ([T, D] packed; [S, D] or [B, S, D] batched), q and k are first
    rotated as the Qwen-VL towers do: in fp32, rotate-half, cast back to their dtype."""
    if rotary is not None:
        cos, sin = rotary
        q, k = (_rotated(x, cos, sin) for x in (q, k))
    if cu_seqlens is None:
        batch, seq, heads, dim = q.shape
        flat = [x.reshape(batch * seq, heads, dim) for x in (q, k, v)]
        bounds = torch.arange(0, batch + 1, device="cpu") * seq
        return reference_attention(*flat, bounds, scale=scale,
                                   compute_dtype=compute_dtype).reshape(q.shape)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    q, k, v = (x.to(compute_dtype) for x in (q, k, v))
    out = torch.zeros_like(q)
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        if end <= start:
            continue
        # A few heads at a time keep the [heads, L, L] scores under about 1 GB.
        step = max(1, (1 << 30) // (8 * (end - start) ** 2))
        for h in range(0, q.shape[1], step):
            qs, ks, vs = (x[start:end, h:h + step].transpose(0, 1) for x in (q, k, v))
            weights = torch.softmax(qs @ ks.transpose(1, 2) * scale, dim=-1)
            out[start:end, h:h + step] = (weights @ vs).transpose(0, 1)
    return out


def _rotated(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    x32 = x.float()
    swapped = torch.cat((-x32[..., half:], x32[..., :half]), dim=-1)
    cos32, sin32 = (t.float()[..., None, :] for t in (cos, sin))  # one row per token
    return (x32 * cos32 + swapped * sin32).to(x.dtype)


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64; NaN or Inf anywhere in `out` gives inf."""
    out64, ref64 = out.double(), ref.double().to(out.device)
    if not torch.isfinite(out64).all():
        return float("inf")
    return float((out64 - ref64).norm() / ref64.norm().clamp_min(1e-30))


# ||out - ref|| / ||ref|| bounds per input dtype (fp32 uses exact fp32 products).
TOLERANCE = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 2e-2}
