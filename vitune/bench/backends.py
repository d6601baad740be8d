"""Every backend measured side by side (vitune's kernel five ways, the other libraries
through the runtime's adapters, vitune.runtime.backends), in the same run on the same card;
their names: vitune.runtime.backend_names.MEASURED_BACKENDS.

Each is `prepare(workload, q, k, v, cu) -> Prepared | None`: `run()` does one forward
pass and returns its result tensor (the adapters unwrap the libraries' tuples),
`packed(result)` views it as [T, H, D] for the correctness check; None means the backend
cannot take this workload (e.g. SDPA on unequal segment lengths) or is not installed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from vitune.bench.workloads import Workload
from vitune.kernels.vision_attn.reference import relative_error
from vitune.kernels.vision_attn.rotary import apply_rotary
from vitune.kernels.vision_attn.rotate import rotate_rows
from vitune.kernels.vision_attn.space import KernelConfig, default_config
from vitune.runtime.api import vision_attention
from vitune.runtime.backend_names import PEER_BACKENDS, VITUNE_PEERS
from vitune.runtime.backends import (
    BackendUnavailable,
    as_batches,
    block_diagonal_mask,
    from_batches,
    sdpa,
    varlen_function,
)
from vitune.runtime.gpu import device_arch


@dataclass(frozen=True)
class Prepared:
    run: Callable[[], torch.Tensor]
    packed: Callable[[torch.Tensor], torch.Tensor] = lambda out: out
    # Before the check, for a call that allocates its own output: a NaN-filled block of the
    # output's size, freed at once, which the caching allocator then hands to that output.
    poison: Callable[[], object] = lambda: None


def sglang_style_config(head_dim: int) -> KernelConfig:
    """The fixed constants SGLang's vision Triton kernel ships on sm_90: 128 x 128 tiles,
    4 warps up to head_dim 64 and 8 above, one stage, head_dim padded to a power of two."""
    return KernelConfig(block_m=128, block_n=128, num_warps=4 if head_dim <= 64 else 8,
                        num_stages=1, head_split=False, heads_fastest=False)


def _sdpa(kernel: str) -> Callable[..., Prepared | None]:
    """SDPA on one pinned kernel: equal segment lengths only, as one batched call."""
    def prepare(w: Workload, q, k, v, cu) -> Prepared | None:
        if not w.equal_lengths:
            return None
        qb, kb, vb = (as_batches(x, len(w.seqlens), w.seqlens[0]) for x in (q, k, v))
        scale = w.head_dim ** -0.5
        return Prepared(lambda: sdpa(qb, kb, vb, scale, kernel),
                        lambda out: from_batches(out, q.shape))
    return prepare


def _masked_sdpa(w: Workload, q, k, v, cu) -> Prepared | None:
    """What serving engines did by default: one [1, T, T] block-diagonal boolean mask."""
    if w.total_tokens > 32768:
        return None  # the T^2 mask alone would take over a GB
    mask = block_diagonal_mask(cu, w.total_tokens)[None]
    qt, kt, vt = (x.transpose(0, 1) for x in (q, k, v))
    scale = w.head_dim ** -0.5
    return Prepared(lambda: sdpa(qt, kt, vt, scale, attn_mask=mask),
                    lambda out: out.transpose(0, 1))


def _varlen(backend: str) -> Callable[..., Prepared | None]:
    """A packed varlen kernel (vitune.runtime.backends.VARLEN_KERNELS); None where it is
    not installed."""
    def prepare(w: Workload, q, k, v, cu) -> Prepared | None:
        try:
            fn = varlen_function(backend)
        except BackendUnavailable:
            return None
        m, scale = w.max_seqlen, w.head_dim ** -0.5
        return Prepared(lambda: fn(q, k, v, cu, m, scale))
    return prepare


def _vitune(config_for: Callable[[Workload, torch.device], KernelConfig | None],
            backend: str = "auto") -> Callable[..., Prepared | None]:
    """vitune's call; with `rotary`, fused into the kernel. With `given_out` the result
    lands in a buffer passed as out= (poisoned with NaN, so unwritten elements fail the
    check); without, vision_attention allocates it."""
    def prepare(w: Workload, q, k, v, cu, rotary=None, given_out: bool = True) -> Prepared:
        def nan_buffer() -> torch.Tensor:
            return torch.full_like(q, float("nan"), memory_format=torch.contiguous_format)

        out = nan_buffer() if given_out else None
        cfg = config_for(w, q.device)
        return Prepared(lambda: vision_attention(q, k, v, cu, w.max_seqlen, out=out,
                                                 config=cfg, backend=backend, rotary=rotary),
                        poison=nan_buffer if out is None else lambda: None)
    return prepare


def _vitune_rotate_first(w: Workload, q, k, v, cu, rotary=None,
                         given_out: bool = True) -> Prepared | None:
    """With `rotary`: vitune's rotation pass (rotate.py, as the tile kernel's keys get it)
    over q and k into buffers, then `auto` without rotary over them, both in the timed call:
    the other way to fuse the rotary, against rotating q inside the kernel. None without
    rotary (the same as vitune-auto)."""
    if rotary is None:
        return None
    auto = _vitune(lambda w, device: None)
    return _rotary_first(lambda *args: auto(*args, None, given_out), rotate_rows)(
        w, q, k, v, cu, rotary)


def _rotary_first(prepare: Callable[..., Prepared | None], rotate: Callable
                  ) -> Callable[..., Prepared | None]:
    """A backend that cannot rotate inside its kernel: with `rotary`, every run first
    rotates q and k with `rotate(x, cos, sin, out)` into buffers it then attends over."""
    def with_rotary(w: Workload, q, k, v, cu, rotary=None) -> Prepared | None:
        if rotary is None:
            return prepare(w, q, k, v, cu)
        q_rot, k_rot = (torch.empty_like(x, memory_format=torch.contiguous_format)
                        for x in (q, k))
        inner = prepare(w, q_rot, k_rot, v, cu)
        if inner is None:
            return None

        def run():
            rotate(q, *rotary, q_rot)
            rotate(k, *rotary, k_rot)
            return inner.run()
        return Prepared(run, inner.packed, inner.poison)
    return with_rotary


def vitune_with(cfg: KernelConfig | None) -> Callable[..., Prepared | None]:
    """vitune's kernel with one fixed config (None: what the runtime would pick)."""
    return _vitune(lambda w, device: cfg)


def _builtin_default(w: Workload, device: torch.device) -> KernelConfig:
    return default_config(w.head_dim, w.torch_dtype, device_arch(device), w.max_seqlen)


def prepare_peer(name: str, w: Workload, q, k, v, cu, rotary=None,
                 given_out: bool = False, vitune_rotation: bool = False) -> Prepared | None:
    """The backend `name` ready to run on these inputs. With `given_out`, as a caller who
    passes out= gets it: vitune's kernel writes the buffer directly, another backend's
    result is copied into it (what vision_attention(out=...) does for them). With
    `vitune_rotation`, another library's q and k are rotated by vitune's rotation pass
    rather than torch's (what vision_attention(rotary=...) does for them)."""
    if name in VITUNE_PEERS:
        return PEERS[name](w, q, k, v, cu, rotary, given_out=given_out)
    make = _rotary_first(LIBRARIES[name], rotate_rows) if vitune_rotation else PEERS[name]
    peer = make(w, q, k, v, cu, rotary)
    if peer is None or not given_out:
        return peer
    out = torch.full_like(q, float("nan"), memory_format=torch.contiguous_format)

    def run() -> torch.Tensor:
        return out.copy_(peer.packed(peer.run()))
    return Prepared(run)


def check_backend(peer: Prepared, ref: torch.Tensor) -> float:
    """Relative error of one backend's output against the reference on this input (a
    buffer given as out= starts poisoned with NaN, so unwritten elements fail; see
    Prepared.poison for an output the call allocates itself)."""
    peer.poison()
    return relative_error(peer.packed(peer.run()), ref)


# The other libraries, as they run without rotary.
LIBRARIES: dict[str, Callable[..., Prepared | None]] = {
    "sdpa-flash": _sdpa("FLASH_ATTENTION"),
    "sdpa-cudnn": _sdpa("CUDNN_ATTENTION"),
    "sdpa-memeff": _sdpa("EFFICIENT_ATTENTION"),
    "sdpa-masked": _masked_sdpa,
    "varlen_attn": _varlen("varlen"),
    "flash_attn": _varlen("flash_attn"),
}

PEERS: dict[str, Callable[..., Prepared | None]] = {
    # What a user gets: the selector's backend (a peer where it measured faster) and config.
    "vitune-auto": vitune_with(None),
    # vitune's Triton kernel with the tuned config (the built-in one where none was tuned).
    "vitune-tuned": _vitune(lambda w, device: None, backend="triton"),
    # vitune's Triton kernel with the built-in per-architecture default, ignoring tuned files.
    "vitune-default": _vitune(_builtin_default),
    "sglang-style-fixed": _vitune(lambda w, device: sglang_style_config(w.head_dim)),
    # With rotary: q and k rotated by vitune's rotation pass, then the call without rotary.
    "vitune-rotate-first": _vitune_rotate_first,
    # (the peers above are vitune's own call: they take given_out themselves)
    # The other libraries; with rotary, q and k rotated by torch first (fp32, as the towers
    # do: what a user of the library runs), see prepare_peer for vitune's rotation instead.
    **{name: _rotary_first(library, apply_rotary) for name, library in LIBRARIES.items()},
}


# Libraries whose first call in a process loads and sets them up (seconds for cuDNN)
LIBRARY_PEERS = tuple(PEER_BACKENDS)


def warm_up_peers() -> None:
    """Call each library peer once on a tiny bf16 input, so a tuner's first crown does not
    pay for loading and setting them up; a peer that cannot run here is left to the crown
    to report."""
    w = Workload("warm-up", (128, 128), heads=2, head_dim=80, dtype="bfloat16")
    q, k, v = w.make_qkv("cuda")
    cu = w.cu_seqlens("cuda")
    for name in LIBRARY_PEERS:
        try:
            if (peer := PEERS[name](w, q, k, v, cu)) is not None:
                peer.run()
        except Exception:  # (the crown reports what is wrong, where it matters)
            continue
    torch.cuda.synchronize()
