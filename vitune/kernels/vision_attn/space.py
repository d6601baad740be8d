"""The vision-attention kernel's config, its search space (declared once, as data) and the
validity rules that reject an impossible config before anything is compiled."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace

import torch

from vitune.kernels.arch import ArchSpec

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# Where the miscompile rules below apply: measured on Hopper's wgmma path; Blackwell lowers
# tl.dot to tcgen05 and is untested on hardware, so it is held to the same rules until measured.
WGMMA_ARCHS = ("hopper", "blackwell")
# The Triton release those rules were measured with (H100, H200); under another one they
# hold as they are, and vitune.kernels.triton_compat.note_rules_version says so once.
RULES_MEASURED_ON_TRITON = (3, 6)
HEAD_DIMS = tuple(range(32, 257, 8))  # every multiple of 8 from 32 to 256
MAX_HEAD_CHUNKS = 3  # the kernel carries at most three head-dim chunks (acc0..acc2)
MIN_CHUNK = 16  # tl.dot needs every dimension >= 16
WINDOW_MAX_SEQLEN = 128  # segments up to this long are the (memory-bound) window regime
# Shared memory the window kernel adds with rotary fused, per element of its tiles and per
# pipeline stage ahead: compiled for sm_90 (Triton 3.9, bf16, head_dim 64-128, block_m 64
# and 128, 1-4 stages) it took 10 bytes (two 16-bit partners, fp32 cos and sin, less the
# loads the pipeliner leaves in registers); 11 keeps a margin.
ROTARY_STAGE_BYTES = 11

# Every tunable choice and the values the tuner may pick. The kernel reads nothing else.
SEARCH_SPACE: dict[str, tuple] = {
    "block_m": (32, 64, 128, 256),  # query tokens per program
    "block_n": (32, 64, 128),  # key tokens per inner-loop step
    "num_warps": (2, 4, 8),
    "num_stages": (1, 2, 3, 4),  # software-pipelining depth of the key loop
    # Split a non-power-of-two head_dim into power-of-two chunks (80 = 64 + 16) instead of
    # padding it (80 -> 128): less wasted matrix work, more and narrower dots.
    "head_split": (True, False),
    # Program order: all heads of a token tile back to back (windows: neighbouring programs
    # share cache lines of the packed [tokens, heads, dim] rows) or all token tiles of a head
    # back to back (long segments: the head's keys and values stay in L2).
    "heads_fastest": (True, False),
    # Keys and values through tensor descriptors (TMA: Hopper's copy engine fills shared
    # memory, no address arithmetic or masks in the key loop) instead of pointer loads.
    "tma": (False, True),
    # The window kernel (windows.py) instead of the tile kernel: two programs per
    # multiprocessor loop over (segment, head) items, each attended in a single step, the
    # next items' loads pipelined behind it. For many short segments (packed input; batched
    # input runs the same tiles in the tile kernel). block_m is the longest segment taken
    # in one step; keys come in the same tile (block_n = block_m), heads fastest, no
    # descriptors.
    "windows": (False, True),
}


@dataclass(frozen=True)
class KernelConfig:
    """One point of SEARCH_SPACE. Field names match the space's keys and the YAML schema."""

    block_m: int = 128
    block_n: int = 64
    num_warps: int = 8
    num_stages: int = 2
    head_split: bool = True
    heads_fastest: bool = False
    tma: bool = False
    windows: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    def as_tuple(self) -> tuple:
        """Fields in declaration order (cheap: no deep copy, unlike dataclasses.astuple)."""
        return (self.block_m, self.block_n, self.num_warps, self.num_stages, self.head_split,
                self.heads_fastest, self.tma, self.windows)

    @classmethod
    def from_dict(cls, data: dict) -> KernelConfig:
        """Build from a mapping with known keys only; values are checked by `check_config`."""
        if not isinstance(data, dict):
            raise TypeError(f"config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"config has unknown keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)

    def short(self) -> str:
        split = "split" if self.head_split else "pad"
        if self.windows:
            return f"win-m{self.block_m}w{self.num_warps}s{self.num_stages}-{split}"
        order = "heads" if self.heads_fastest else "tiles"
        return (f"m{self.block_m}n{self.block_n}w{self.num_warps}s{self.num_stages}"
                f"-{split}-{order}" + ("-tma" if self.tma else ""))

    def canonical(self, head_dim: int) -> KernelConfig:
        """One name per kernel: fields that change nothing take one value (head_split at
        power-of-two head dims; block_n, heads_fastest and tma in the window kernel)."""
        cfg = self
        if head_chunks(head_dim, True) == head_chunks(head_dim, False):
            cfg = replace(cfg, head_split=True)
        if cfg.windows:
            cfg = replace(cfg, block_n=cfg.block_m, heads_fastest=True, tma=False)
        return cfg


def _next_pow2(x: int) -> int:
    return 1 << (x - 1).bit_length()


def head_chunks(head_dim: int, head_split: bool) -> tuple[int, int, int]:
    """Widths of the (up to three) power-of-two head-dim chunks the kernel computes on.

    With head_split, head_dim rounded up to a multiple of 16 is written as a sum of powers of
    two, largest first (80 -> 64 + 16, 88 -> 64 + 32, 112 -> 64 + 32 + 16); beyond three
    chunks the smallest ones merge into one padded chunk (240 -> 128 + 64 + 64). Without it,
    one chunk padded to the next power of two (80 -> 128), as most Triton kernels do.
    Absent chunks have width 0.
    """
    if not head_split:
        return (max(_next_pow2(head_dim), MIN_CHUNK), 0, 0)
    width = -(-head_dim // MIN_CHUNK) * MIN_CHUNK
    chunks = [1 << b for b in range(width.bit_length() - 1, -1, -1) if width & (1 << b)]
    if len(chunks) > MAX_HEAD_CHUNKS:
        rest = sum(chunks[MAX_HEAD_CHUNKS - 1:])
        chunks = chunks[: MAX_HEAD_CHUNKS - 1] + [_next_pow2(rest)]
    chunks += [0] * (MAX_HEAD_CHUNKS - len(chunks))
    return tuple(chunks)  # type: ignore[return-value]


def chunk_offsets(head_dim: int, head_split: bool) -> tuple[int, int, int]:
    """Column offset of each chunk. In split mode the last chunk is shifted left to end at
    head_dim (overlapping the previous one), so no chunk reads past the head dim."""
    chunks = head_chunks(head_dim, head_split)
    offsets = [0, chunks[0], chunks[0] + chunks[1]]
    last = max(i for i, c in enumerate(chunks) if c)
    if head_split and offsets[last] + chunks[last] > head_dim:
        offsets[last] = head_dim - chunks[last]
    return tuple(offsets)  # type: ignore[return-value]


def padded_head_dim(head_dim: int, head_split: bool) -> int:
    return sum(head_chunks(head_dim, head_split))


def estimate_smem_bytes(cfg: KernelConfig, head_dim: int, dtype: torch.dtype,
                        arch: ArchSpec | None = None, rotary: bool = False) -> int:
    """Shared memory one program needs: the Q tile, K and V tiles for each pipeline stage,
    and the P tile staged for the second matrix product. On Hopper's wgmma path with
    descriptors P stays in registers (wgmma takes its A operand from there) and the
    compiler's figure is the tiles plus the copies' barriers: checked ahead of time for
    every such config that the P tile alone would push over the budget and a sample of
    the rest (`vitune compile-check`, triton 3.9, sm_90)."""
    elt = dtype.itemsize
    width = padded_head_dim(head_dim, cfg.head_split)
    stages = max(cfg.num_stages, 1)
    if cfg.windows:  # Q, K and V of each item in flight, the P tile and the scores
        # (Triton 3.9, sm_90, block_m 64, width 128: 112 KB with 2 stages, 152 with 3)
        tiles = elt * (3 * cfg.block_m * width * stages + 2 * cfg.block_m * cfg.block_m)
        if rotary:  # q's and k's rotate-half partners and fp32 cos/sin, in each stage ahead
            tiles += ROTARY_STAGE_BYTES * cfg.block_m * width * (stages - 1)
        return tiles
    tiles = cfg.block_m * width + 2 * cfg.block_n * width * stages
    if (arch is not None and arch.name == "hopper" and cfg.tma and cfg.block_m >= 64
            and cfg.num_warps >= 4):
        return elt * tiles + 1024  # the copies' barriers: 32-1024 bytes over the tiles
    return elt * (tiles + cfg.block_m * cfg.block_n)


def estimate_regs_per_thread(cfg: KernelConfig, head_dim: int, dtype: torch.dtype) -> int:
    """Registers per thread for the live tiles, plus a fixed allowance for addresses and
    softmax state."""
    elt = dtype.itemsize
    width = padded_head_dim(head_dim, cfg.head_split)
    threads = cfg.num_warps * 32
    # fp32 accumulator and scores; P reuses the scores' registers and Q is read from shared
    # memory by the matrix units (SGLang's 128 x 128, 4-warp tile at head_dim 64 fits).
    words = cfg.block_m * width + cfg.block_m * cfg.block_n
    if elt == 4:
        words += cfg.block_m * width  # fp32 Q stays in registers for the FMA path
    return words // threads + 32


def check_config(cfg: KernelConfig, head_dim: int, dtype: torch.dtype,
                 arch: ArchSpec, rotary: bool = False) -> str | None:
    """None if `cfg` can run for (head_dim, dtype) on `arch` (with the rotary embedding
    fused where `rotary`), else the reason it cannot."""
    for name, choices in SEARCH_SPACE.items():
        value = getattr(cfg, name)
        if type(value) is not type(choices[0]) or value not in choices:
            return f"{name}={value!r} is not one of {list(choices)}"
    if head_dim not in HEAD_DIMS:
        return f"head_dim={head_dim} is not a multiple of 8 in [32, 256]"
    if cfg.windows:
        if cfg.block_n != cfg.block_m:
            return "windows: keys come in the query tile (block_n must equal block_m)"
        if cfg.tma or not cfg.heads_fastest:
            return "windows: the window kernel takes heads fastest, without descriptors"
    if dtype not in SUPPORTED_DTYPES:
        return f"dtype {dtype} is not supported"
    if cfg.tma:
        if not arch.has_tma:
            return f"tma: {arch.name} has no tensor-memory accelerator"
        if dtype == torch.float32:
            return "tma is for 16-bit inputs (fp32 takes the exact FMA path)"
        if not cfg.head_split and padded_head_dim(head_dim, False) != head_dim:
            return f"tma with head_split=False would read past head_dim={head_dim}"
    if cfg.num_warps > arch.max_warps:
        return f"num_warps={cfg.num_warps} exceeds {arch.max_warps} on {arch.name}"
    if cfg.block_m < 8 * cfg.num_warps:
        return f"block_m={cfg.block_m} leaves warps idle with num_warps={cfg.num_warps}"
    smem = estimate_smem_bytes(cfg, head_dim, dtype, arch, rotary)
    if smem > arch.smem_per_block:
        allowed = arch.smem_per_block // 1024
        fused = " with rotary fused" if rotary and cfg.windows else ""
        return f"needs ~{smem // 1024} KB shared memory{fused}, {arch.name} allows {allowed} KB"
    regs = estimate_regs_per_thread(cfg, head_dim, dtype)
    if regs > arch.max_regs_per_thread:
        return f"needs ~{regs} registers per thread, {arch.name} allows {arch.max_regs_per_thread}"
    if (arch.name in WGMMA_ARCHS and cfg.num_stages == 1 and cfg.block_m >= 64
            and cfg.block_n >= 64 and head_chunks(head_dim, cfg.head_split)[1] > 0):
        # Measured: wrong results from chained Q K^T dots on the wgmma path without
        # pipelining (Triton 3.6, H200, 2026-11-27). See docs/decisions.md, "wgmma miscompiles".
        return "several head-dim chunks with num_stages=1 and 64+ tiles miscompile on wgmma"
    if (needs_aligned_strides(cfg, head_dim, arch) and head_dim % 16 and cfg.num_stages == 1
            and dtype != torch.float32):
        # Measured: head_dim 88 split on wgmma without pipelining reads out of bounds or
        # computes wrongly even with 16-byte strides (72 passed; both held to the rule).
        return f"split head_dim={head_dim} on wgmma needs num_stages >= 2"
    return None


def fit_to_layout(cfg: KernelConfig, head_dim: int, dtype: torch.dtype, arch: ArchSpec,
                  layout_aligned: bool) -> KernelConfig:
    """`cfg`, or where it needs an aligned layout (needs_aligned_strides) and the tensors'
    strides or base addresses are not, the nearest config that does not: padded without
    descriptors (the rules admit no descriptors with padding, and strides that are not
    multiples of 8 elements cannot be described anyway), else split on 2 warps (mma v2,
    which takes any layout), else padded on 2 warps, else the first such valid config.
    Each is held to the rules, so a padded variant over the budget is never launched."""
    if layout_aligned or not needs_aligned_strides(cfg, head_dim, arch):
        return cfg
    for candidate in (replace(cfg, head_split=False, tma=False),
                      replace(cfg, num_warps=2, tma=False),
                      replace(cfg, head_split=False, tma=False, num_warps=2)):
        if (not needs_aligned_strides(candidate, head_dim, arch)
                and check_config(candidate, head_dim, dtype, arch) is None):
            return candidate
    return next(c for c in valid_configs(head_dim, dtype, arch)
                if not needs_aligned_strides(c, head_dim, arch))


def fit_to_rotary(cfg: KernelConfig, head_dim: int, dtype: torch.dtype,
                  arch: ArchSpec) -> KernelConfig:
    """`cfg`, or where fusing the rotary embedding breaks its shared-memory budget (the
    window kernel stages q's and k's partners and fp32 cos/sin too), the same config with
    fewer pipeline stages, else the valid config check_config admits with rotary first."""
    if check_config(cfg, head_dim, dtype, arch, rotary=True) is None:
        return cfg
    for stages in range(cfg.num_stages - 1, 0, -1):
        candidate = replace(cfg, num_stages=stages)
        if check_config(candidate, head_dim, dtype, arch, rotary=True) is None:
            return candidate
    return next(c for c in valid_configs(head_dim, dtype, arch, windows=cfg.windows)
                if c.windows == cfg.windows
                and check_config(c, head_dim, dtype, arch, rotary=True) is None)


def needs_aligned_strides(cfg: KernelConfig, head_dim: int, arch: ArchSpec) -> bool:
    """Split head dims on the wgmma path (block_m >= 64 with a full warpgroup, >= 4 warps)
    need every stride to be a multiple of 8 elements (16 bytes), which the launcher then
    passes in units of 8 so the compiler sees the alignment (STRIDE_UNIT). Measured on an
    H100 (Triton 3.6, 2026-11-27): with strides of 72 or 88 elements passed as they are,
    wrong results or illegal addresses; passed in units of 8, all split configs at 72 and
    88 with 4 and 8 warps right but 88 with one stage (probed config by config). With 2
    warps Triton uses mma v2 instead, right in every case."""
    return (arch.name in WGMMA_ARCHS and cfg.block_m >= 64 and cfg.num_warps >= 4
            and head_chunks(head_dim, cfg.head_split)[1] > 0)


def valid_configs(head_dim: int, dtype: torch.dtype, arch: ArchSpec,
                  windows: bool = True) -> Iterator[KernelConfig]:
    """Every valid config for (head_dim, dtype, arch) in canonical form (KernelConfig.
    canonical), each once; without the window kernel's where `windows` is False."""
    names = list(SEARCH_SPACE)
    for values in itertools.product(*SEARCH_SPACE.values()):
        cfg = KernelConfig(**dict(zip(names, values, strict=True)))
        if cfg.canonical(head_dim) != cfg or (cfg.windows and not windows):
            continue
        if check_config(cfg, head_dim, dtype, arch) is None:
            yield cfg


def default_config(head_dim: int, dtype: torch.dtype, arch: ArchSpec,
                   mean_seqlen: float | None) -> KernelConfig:
    """The built-in config when nothing tuned is at hand, per regime: short windows (mean
    segment length <= 128) are memory bound, long segments compute bound. Cached: it runs
    on every call that passes no config."""
    window = mean_seqlen is not None and mean_seqlen <= WINDOW_MAX_SEQLEN
    return _default_config(head_dim, dtype, arch, window)


@functools.cache
def _default_config(head_dim: int, dtype: torch.dtype, arch: ArchSpec,
                    window: bool) -> KernelConfig:
    candidates = []
    if window:
        # The window kernel's best at head_dim 80 and 64, within 2% of it at 72 and 128
        # (H100, A/B of window configs, 2026-11-27, docs/decisions.md): 1.20x, 1.32x, 1.12x
        # and 1.16x the tile kernel's best window configs there.
        windows = KernelConfig(block_m=64, block_n=64, num_warps=4, num_stages=3,
                               heads_fastest=True, windows=True)
        candidates += [replace(windows, head_split=split) for split in (True, False)]
        # Before it: best of the window sweep's first 102 configs, H200 (docs/decisions.md)
        cfg = KernelConfig(block_m=64, block_n=32, num_warps=2, num_stages=2,
                           heads_fastest=True)
    else:
        # Best of five full-attention candidates at head_dim 72 and 80 (4 x 4096 tokens, H100,
        # A/B of configs, 2026-11-27): 1.7x the former m128n64w8s2 there; at 128 1.05x
        # it (m256n64w8s3 is 16% faster there: tuning finds it). Descriptors added 3-24%.
        cfg = KernelConfig(block_m=128, block_n=64, num_warps=4, num_stages=3,
                           heads_fastest=False,
                           tma=arch.has_tma and dtype != torch.float32)
    # Fall back to the padded head dim, then to smaller tiles, where the rules say no.
    for split, block_n, stages in ((True, cfg.block_n, cfg.num_stages),
                                   (False, cfg.block_n, cfg.num_stages), (True, 32, 2),
                                   (False, 32, 2), (True, 32, 1)):
        candidates.append(replace(cfg, head_split=split, block_n=block_n, num_stages=stages))
    for candidate in candidates:
        if check_config(candidate, head_dim, dtype, arch) is None:
            return candidate.canonical(head_dim)
    for candidate in valid_configs(head_dim, dtype, arch):
        return candidate
    raise ValueError(f"no valid config for head_dim={head_dim}, dtype={dtype} on {arch.name}")
