"""Compile the kernel for a GPU architecture without that GPU (Triton's ahead-of-time path:
the bundled ptxas builds sm_90 and sm_100 code on any machine). It tells whether a config
compiles for Hopper or Blackwell, which matrix instructions it got and how much shared
memory it really takes, so validity rules for a GPU that is not at hand can be checked.

Needs the compiled kernel: run it in a process without TRITON_INTERPRET=1.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import torch

from vitune.kernels import triton_compat
from vitune.kernels.arch import ArchSpec
from vitune.kernels.vision_attn.launch import kernel_constants, stride_unit
from vitune.kernels.vision_attn.space import KernelConfig, head_chunks, valid_configs

POINTERS = ("Q", "K", "V", "Out", "COS", "SIN")  # (COS, SIN: q when unrotated)
DESCRIPTORS = ("KD0", "KD1", "KD2", "VD0", "VD1", "VD2")


@dataclass(frozen=True)
class CompiledInfo:
    capability: int  # e.g. 90, 100
    shared_bytes: int
    matrix_instructions: str  # "wgmma" (Hopper), "tcgen05" (Blackwell), "mma" (older path)
    global_loads: int  # ld.global instructions in the PTX
    vector_loads: int  # of those, 16-byte (v4) ones
    tma_loads: int  # cp.async.bulk.tensor instructions (tensor-descriptor copies)


def compile_for(cfg: KernelConfig, head_dim: int, dtype: torch.dtype, capability: int,
                heads: int = 16, unit: int | None = None) -> CompiledInfo:
    """Compile the kernel `cfg` runs (the tile kernel, or the window kernel where
    cfg.windows) for compute capability `capability` (90 = sm_90), specialised as a launch
    on packed q, k, v views of one fused [T, 3, heads, head_dim] tensor with a contiguous
    output would be (16-byte aligned pointers; ints that are multiples of 16 marked so).
    `unit` overrides the launcher's stride unit (1 or 8)."""
    from vitune.kernels.vision_attn.kernel import vision_attn_fwd
    from vitune.kernels.vision_attn.windows import vision_attn_windows_fwd

    kernel_fn = vision_attn_windows_fwd if cfg.windows else vision_attn_fwd
    names = triton_compat.argument_names(kernel_fn)
    fused = [(0, 3 * heads * head_dim, head_dim)] * 3
    strides = [*fused, (0, heads * head_dim, head_dim)]
    unit = stride_unit(strides) if unit is None else unit
    ints = dict(zip([f"stride_{t}{a}" for t in "qkvo" for a in "bth"],
                    [s // unit for group in strides for s in group], strict=True))
    ints["n_heads"] = heads
    constexprs = dict(kernel_constants(cfg, head_dim, dtype, True, unit))
    widths = list(head_chunks(head_dim, cfg.head_split)) * 2
    signature = {}
    for name in names:
        if name in DESCRIPTORS:
            width = widths[DESCRIPTORS.index(name)]
            if cfg.tma and width:
                signature[name] = triton_compat.descriptor_type(dtype, (cfg.block_n, width))
            else:
                signature[name] = triton_compat.CONSTEXPR
                constexprs[name] = None
        elif name in constexprs:
            signature[name] = triton_compat.CONSTEXPR
        elif name in POINTERS:
            signature[name] = triton_compat.pointer_type(dtype)
        elif name == "CU":
            signature[name] = triton_compat.INT32_POINTER
        elif name == "qk_scale":
            signature[name] = triton_compat.FLOAT32
        else:
            signature[name] = triton_compat.INT32
    aligned = [n for n in names if n in (*POINTERS, "CU") or ints.get(n, 1) % 16 == 0]
    ptx, shared = triton_compat.compile_ahead(kernel_fn, signature, constexprs, aligned,
                                              capability, cfg.num_warps, cfg.num_stages)
    instructions = "tcgen05" if "tcgen05" in ptx else "wgmma" if "wgmma" in ptx else "mma"
    loads = re.findall(r"ld\.global\S*", ptx)
    return CompiledInfo(capability, shared, instructions, len(loads),
                        sum(".v4." in op for op in loads),
                        len(re.findall(r"cp\.async\.bulk\.tensor", ptx)))


def _compile_or_reason(args: tuple) -> CompiledInfo | str:
    try:
        return compile_for(*args)
    except Exception as exc:  # a compiler error is this config's result
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:300]}"


def compile_space(arch: ArchSpec, head_dim: int, dtype: torch.dtype, jobs: int,
                  limit: int | None = None, kernel: str = "all"
                  ) -> Iterator[tuple[KernelConfig, CompiledInfo | str]]:
    """Compile every valid config (or the first `limit`) of `kernel` ("all", "tiles" or
    "windows") for `arch` in `jobs` processes; yields (config, info or the compiler's
    reason) as they finish."""
    capability = arch.min_capability[0] * 10 + arch.min_capability[1]
    triton_compat.note_rules_version(arch.name)  # (here, not once per compile process)
    configs = [c for c in valid_configs(head_dim, dtype, arch)
               if kernel == "all" or c.windows == (kernel == "windows")][:limit]
    saved = os.environ.pop("TRITON_INTERPRET", None)  # the children compile for real
    try:
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            results = pool.map(_compile_or_reason,
                               [(cfg, head_dim, dtype, capability) for cfg in configs])
            yield from zip(configs, results, strict=True)
    finally:
        if saved is not None:
            os.environ["TRITON_INTERPRET"] = saved
