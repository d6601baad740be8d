"""Launch the vision-attention kernel on already-validated tensors (see vitune.runtime.api)."""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import NamedTuple

import torch
import triton

from vitune.kernels import triton_compat
from vitune.kernels.triton_compat import TensorDescriptor, tensor_descriptor, warmup_launcher
from vitune.kernels.vision_attn.kernel import vision_attn_fwd
from vitune.kernels.vision_attn.rotate import rotate_rows
from vitune.kernels.vision_attn.space import KernelConfig, chunk_offsets, head_chunks
from vitune.kernels.vision_attn.windows import PROGRAMS_PER_SM, vision_attn_windows_fwd

LOG2E = 1.4426950408889634


def kernel_is_interpreted() -> bool:
    """True when TRITON_INTERPRET=1 was set before the kernel module was imported: the kernel
    then runs on the CPU through NumPy."""
    return triton_compat.is_interpreted(vision_attn_fwd)


Rotary = tuple[torch.Tensor, torch.Tensor]  # (cos, sin): [tokens, D] or [batch, tokens, D]


def launch_vision_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            out: torch.Tensor, cu_seqlens: torch.Tensor | None, scale: float,
                            cfg: KernelConfig, warmup: bool = False,
                            rotary: Rotary | None = None) -> torch.Tensor:
    """Packed [T, H, D] with cu_seqlens, or batched [B, S, H, D] without. Strides of every
    axis but the last are free; nothing is copied. With `rotary` (cos, sin of equal shapes
    and strides), q and k are rotated first: inside the kernel as they are loaded (the
    window kernel; the tile kernel's queries), the tile kernel's keys by one pass into a
    contiguous buffer (rotate.py). With `warmup`, the kernel is compiled for these
    arguments (into Triton's on-disk cache) but not run."""
    return run_launch(plan_launch(q, k, v, out, cu_seqlens, scale, cfg, rotary), q, k, v,
                      out, cu_seqlens, warmup, rotary)


class Launch(NamedTuple):  # (a tuple: built on every direct launch, cheaply)
    """A launch's arguments other than the tensors' addresses. They follow from shapes,
    strides, dtype, scale and config alone, so a caller that keys on those (the runtime's
    per-signature plans) computes them once and launches with `run_launch`."""

    config: KernelConfig  # as launched; with tma, descriptors when k and v allow them
    grid: tuple[int]
    scalars: tuple  # lengths, head counts, strides in units, the folded scale
    constants: dict  # compile-time arguments (with tma: the descriptor variant)
    pointer_constants: dict  # the same without descriptors
    rows: int  # 0: nothing to compute
    varlen: bool


def plan_launch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                cu_seqlens: torch.Tensor | None, scale: float, cfg: KernelConfig,
                rotary: Rotary | None = None) -> Launch:
    """Everything `run_launch` passes besides the tensors, from their shapes and strides."""
    if kernel_is_interpreted():  # (a release pair that cannot run it: one clear error)
        triton_compat.check_interpreter()
    if cfg.windows and cu_seqlens is None:  # batched input: the same tiles, tile by tile
        cfg = replace(cfg, windows=False)
    if rotary is not None and not cfg.windows:  # keys come rotated in a contiguous buffer
        k = rotated_keys_like(k)
    rotary_strides = (0, 0) if rotary is None else \
        (rotary[0].stride(0) if rotary[0].dim() == 3 else 0, rotary[0].stride(-2))
    rotary_unit = stride_unit([(*rotary_strides, 0)])
    rotary_scalars = tuple(s // rotary_unit for s in rotary_strides)
    if cu_seqlens is not None:
        batch, (seq_len, heads, head_dim) = 1, q.shape
        n_segments = cu_seqlens.numel() - 1
        strides = [(0, x.stride(0), x.stride(1)) for x in (q, k, v, out)]
    else:
        batch, seq_len, heads, head_dim = q.shape
        n_segments = 1
        strides = [(x.stride(0), x.stride(1), x.stride(2)) for x in (q, k, v, out)]
    rows = batch * seq_len if heads else 0
    unit = stride_unit(strides)
    if cfg.windows:
        # The window kernel (windows.py): PROGRAMS_PER_SM programs per multiprocessor, or
        # one per (segment, head) item where there are fewer; no batch strides.
        constants = kernel_constants(cfg, head_dim, q.dtype, True, unit,
                                     rotary is not None, rotary_unit)
        programs = min(n_segments * heads, multiprocessors(q.device) * PROGRAMS_PER_SM)
        return Launch(config=cfg, grid=(max(programs, 1),),
                      scalars=(seq_len, n_segments, heads,
                               *(s // unit for _, t, h in strides for s in (t, h)),
                               rotary_scalars[1], scale * LOG2E),
                      constants=constants, pointer_constants=constants, rows=rows,
                      varlen=True)
    n_m_blocks = triton.cdiv(seq_len, cfg.block_m)
    if cfg.tma and not tma_geometry_ok(k, v, rows):  # the same tiles through pointer loads
        cfg = replace(cfg, tma=False)
    varlen = cu_seqlens is not None
    constants = kernel_constants(cfg, head_dim, q.dtype, varlen, unit, rotary is not None,
                                 rotary_unit)
    return Launch(
        config=cfg, grid=(n_m_blocks * heads * batch,),
        scalars=(seq_len, n_segments, max(n_segments - 1, 0).bit_length(), heads, n_m_blocks,
                 *(s // unit for group in strides for s in group), *rotary_scalars,
                 scale * LOG2E),
        constants=constants,
        pointer_constants=kernel_constants(replace(cfg, tma=False), head_dim, q.dtype,
                                           varlen, unit) if cfg.tma else constants,
        rows=rows, varlen=varlen)


def rotated_keys_like(k: torch.Tensor) -> torch.Tensor:
    """A tensor of the rotated keys' layout (contiguous), without memory: what the tile
    kernel is planned and compiled for when keys come rotated."""
    return torch.empty(k.shape, dtype=k.dtype, device="meta")


@functools.cache
def multiprocessors(device: torch.device) -> int:
    """The GPU's multiprocessor count (2 on the CPU, where the interpreter runs the grid
    one program after another: a grid smaller than the work items tests the item loop)."""
    if device.type != "cuda":
        return 2
    return torch.cuda.get_device_properties(device).multi_processor_count


NO_DESCRIPTORS = (None,) * 6


def run_launch(launch: Launch, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               out: torch.Tensor, cu_seqlens: torch.Tensor | None,
               warmup: bool = False, rotary: Rotary | None = None) -> torch.Tensor:
    """Launch with arguments planned for tensors of these shapes and strides (`rotary`
    given exactly when it was at planning)."""
    if not launch.rows:
        return out
    cfg, constants, descriptors = launch.config, launch.constants, NO_DESCRIPTORS
    cos, sin = (q, q) if rotary is None else rotary  # (q: never read)
    if rotary is not None and not cfg.windows:  # the tile kernel's keys: rotated first
        k = rotate_rows(k, cos, sin, torch.empty_like(k, memory_format=torch.contiguous_format),
                        warmup)
    if cfg.windows:
        kernel = warmup_launcher(vision_attn_windows_fwd, launch.grid) if warmup else \
            vision_attn_windows_fwd[launch.grid]
        kernel(q, k, v, out, cu_seqlens, cos, sin, *launch.scalars, **constants,
               num_warps=cfg.num_warps, num_stages=cfg.num_stages)
        return out
    if cfg.tma:  # (descriptors need 16-byte aligned bases; a plan is made before addresses)
        if tensor_bases_aligned(k, v):
            descriptors = (*chunk_descriptors(k, cfg, q.shape[-1], launch.rows),
                           *chunk_descriptors(v, cfg, q.shape[-1], launch.rows))
        else:
            constants = launch.pointer_constants
    kernel = warmup_launcher(vision_attn_fwd, launch.grid) if warmup else \
        vision_attn_fwd[launch.grid]
    kernel(q, k, v, out, cu_seqlens if launch.varlen else q,  # (q: never read)
           *descriptors, cos, sin, *launch.scalars, **constants,
           num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return out


@functools.cache
def kernel_constants(cfg: KernelConfig, head_dim: int, dtype: torch.dtype, varlen: bool,
                     unit: int, rotary: bool = False, rotary_unit: int = 1) -> dict:
    """The kernel's compile-time arguments for a config (the launcher's and the ahead-of-time
    compiler's, so both build the same kernel). Cached: it is on every call's path; callers
    unpack the dict and never change it."""
    rotation = dict(ROTARY=rotary, ROTARY_UNIT=rotary_unit)
    if cfg.windows:
        return dict(**tile_constants(head_dim, cfg.head_split, dtype, unit),
                    D_PAD=head_chunks(head_dim, False)[0], BLOCK_M=cfg.block_m, **rotation)
    return dict(IS_VARLEN=varlen, **tile_constants(head_dim, cfg.head_split, dtype, unit),
                BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, HEADS_FASTEST=cfg.heads_fastest,
                TMA=cfg.tma, **rotation)


def tile_constants(head_dim: int, head_split: bool, dtype: torch.dtype, unit: int) -> dict:
    """Compile-time arguments of every kernel built on kernel.py's tile helpers (the tile
    kernel and windows.py's): the head-dim chunks, the dot precision, the stride unit."""
    d0, d1, d2 = head_chunks(head_dim, head_split)
    _, o1, o2 = chunk_offsets(head_dim, head_split)
    return dict(HEAD_DIM=head_dim, D0=d0, D1=d1, D2=d2, O1=o1, O2=o2,
                PRECISION="ieee" if dtype == torch.float32 else "tf32", STRIDE_UNIT=unit)


def tma_geometry_ok(k: torch.Tensor, v: torch.Tensor, rows: int) -> bool:
    """Strides a descriptor can describe: 16-byte multiples, heads side by side within a
    token's row, and (batched) each batch's rows right after the previous batch's."""
    for x in (k, v):
        *lead, heads, head_dim = x.shape
        stride_t, stride_h = x.stride()[-3], x.stride()[-2]
        if (stride_t * x.element_size()) % 16:
            return False
        if heads > 1 and (stride_h < head_dim or (stride_h * x.element_size()) % 16
                          or stride_t < (heads - 1) * stride_h + head_dim):
            return False
        if len(lead) == 2 and lead[0] > 1 and x.stride(0) != lead[1] * stride_t:
            return False
    return rows > 0


def chunk_descriptors(x: torch.Tensor, cfg: KernelConfig, head_dim: int,
                      rows: int) -> list[TensorDescriptor | None]:
    """One descriptor per head-dim chunk of x (the kernel's chunk widths differ) over the
    2D view [rows, all heads' columns]; absent chunks are None."""
    heads, stride_t, stride_h = x.shape[-2], x.stride()[-3], x.stride()[-2]
    columns = (heads - 1) * stride_h + head_dim
    return [tensor_descriptor(x, [rows, columns], [stride_t, 1], [cfg.block_n, width])
            if width else None for width in head_chunks(head_dim, cfg.head_split)]


def stride_unit(strides: list[tuple[int, int, int]]) -> int:
    """8 where every stride is a multiple of 8 elements but not all of 16 (rows of head_dim
    72 or 88): the kernel gets strides in units of 8 so Triton can see 16-byte alignment,
    which it proves from an argument's value only for multiples of 16. Else 1 (no change)."""
    flat = [s for group in strides for s in group]
    return 8 if all(s % 8 == 0 for s in flat) and not all(s % 16 == 0 for s in flat) else 1


def tensor_bases_aligned(*tensors: torch.Tensor) -> bool:
    """Every tensor starts on a 16-byte boundary. With strides of 16 bytes, that is what
    lets the compiler prove 16-byte rows, which split head dims on wgmma rely on (a base
    off by 8 bytes makes every row as misaligned as a stride of 72 elements did)."""
    return all(x.data_ptr() % 16 == 0 for x in tensors)


def tensor_strides_aligned(*tensors: torch.Tensor) -> bool:
    """Every stride but the head_dim one is a multiple of 8 elements (what split head dims
    on the wgmma path need: space.needs_aligned_strides)."""
    return all(s % 8 == 0 for x in tensors for s in x.stride()[:-1])

