"""The public call: validate at the boundary, pick a config, launch the Triton kernel."""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

import torch

from vitune.kernels.triton_compat import note_rules_version
from vitune.kernels.vision_attn.launch import (
    Launch,
    kernel_is_interpreted,
    plan_launch,
    run_launch,
    tensor_bases_aligned,
    tensor_strides_aligned,
)
from vitune.kernels.vision_attn.rotate import rotated
from vitune.kernels.vision_attn.space import (
    HEAD_DIMS,
    SUPPORTED_DTYPES,
    KernelConfig,
    check_config,
    fit_to_layout,
    fit_to_rotary,
)
from vitune.runtime.backends import BACKENDS, RUNNERS, equal_segments
from vitune.runtime.gpu import device_arch, device_gpu
from vitune.runtime.ops import call_op
from vitune.runtime.selector import choose, length_key, on_clear

VALIDATE_ENV = "VITUNE_VALIDATE"
INT32_MAX = 2 ** 31 - 1


def vision_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     cu_seqlens: torch.Tensor | None = None, max_seqlen: int | None = None, *,
                     scale: float | None = None, out: torch.Tensor | None = None,
                     config: KernelConfig | dict | None = None, backend: str = "auto",
                     validate: bool | None = None,
                     rotary: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Non-causal attention as in ViT vision towers, forward only.

    Layouts: packed `[total_tokens, heads, head_dim]` with `cu_seqlens` (int32, segments + 1
    entries, starting at 0; empty and length-1 segments are legal), or batched
    `[batch, seq, heads, head_dim]` with `cu_seqlens=None`. Any strides on the token, head
    and batch axes (views of a fused qkv tensor work without copies); the head_dim axis must
    be contiguous. head_dim: a multiple of 8 in [32, 256]. dtype: float16, bfloat16 or float32
    (exact fp32 products; slow, for checking); bfloat16 not through the Triton interpreter,
    whose bf16 matrix products are wrong (TypeError).

    `max_seqlen` is optional (vitune's kernels size their grid from the token count) and
    never synchronised; it helps pick the config for the regime. When given it must be at
    least the longest segment: SDPA backends (explicit, or picked by `auto`) take n segments
    adding up to n * max_seqlen tokens as equal, which only that contract makes true;
    `validate=True` checks it.
    `config` is a KernelConfig or a mapping of its fields; without one the tuned config for
    this GPU and shape is looked up (vitune.runtime.selector), falling back to the built-in
    default for the architecture and regime. `scale` defaults to head_dim ** -0.5.
    `out` receives the result (same shape, dtype and device as q, no axis of stride 0); it
    must share no element with k or v and may be q itself but not part of it (checked on
    every call: ValueError).

    `rotary=(cos, sin)` applies a rotary position embedding to q and k first, in the
    rotate-half convention of the Qwen-VL vision towers: x * cos + rotate_half(x) * sin in
    fp32, cast back to q's dtype. cos and sin are `[total_tokens, head_dim]` (packed),
    `[seq, head_dim]` or `[batch, seq, head_dim]` (batched), float16/bfloat16/float32, on q's
    device, with equal shapes and strides and a contiguous last axis (as the towers'
    `position_embeddings` give them). vitune's kernels fuse it (the window kernel rotates q
    and k as it loads them; the tile kernel its queries, its keys in one pass first), so
    `auto` runs them with rotary unless a bucket tuned with rotary measured another backend
    faster; any other backend gets q and k rotated by torch first.

    `backend`: "auto" runs what was measured fastest for this GPU and shape, for the call
    as made (the tuned configs record vitune's Triton kernel and its peers, and the peers
    again with their result copied into a given `out`, which vitune's kernel writes
    directly; files without that second measurement estimate the copy from the GPU's
    bandwidth), falling back to vitune's kernel where that backend cannot take the call
    (e.g. SDPA needs equal segment lengths, known from `max_seqlen`). "triton", "sdpa"
    (torch picks its kernel), "sdpa_cudnn", "sdpa_flash", "varlen" (torch varlen_attn) or
    "flash_attn" run that backend or raise BackendUnavailable; explicit "sdpa" on unequal
    packed segments uses a [T, T] mask.

    Checks that would read device memory (and so synchronise) run only with `validate=True`
    or the environment variable VITUNE_VALIDATE=1: cu_seqlens starts at 0, never decreases,
    ends at total_tokens, and max_seqlen is at least the longest segment.
    """
    compiling = torch.compiler.is_compiling()
    if validate is None:  # (dynamo traces os.environ.get, not the mapping behind it)
        validate = _env_flag_slow() if compiling else validate_from_env()
    key = plan = None
    if not validate and not compiling and type(config) is not dict:
        try:  # the hot path: a signature seen before skips the checks and the decision
            if not (torch.is_grad_enabled()
                    and (q.requires_grad or k.requires_grad or v.requires_grad)):
                key = (q.shape, q.stride(), k.shape, k.stride(), v.shape, v.stride(),
                       q.dtype, k.dtype, v.dtype, q.device, k.device, v.device,
                       None if cu_seqlens is None else (
                           cu_seqlens.shape, cu_seqlens.stride(), cu_seqlens.dtype,
                           cu_seqlens.device),
                       None if out is None else (out.shape, out.stride(), out.dtype,
                                                 out.device),
                       max_seqlen, type(max_seqlen), scale, type(scale), config, backend,
                       None if rotary is None else tuple(
                           (x.shape, x.stride(), x.dtype, x.device) for x in rotary),
                       # (whether every base address is 16-byte aligned: see _plan_call)
                       (q.data_ptr() | k.data_ptr() | v.data_ptr()
                        | (0 if out is None else out.data_ptr())) & 15 == 0)
                plan = _plans.get(key)
        except (AttributeError, TypeError, RuntimeError):  # not (plain) tensors, unhashable:
            # the checks say why
            key = None
    if plan is None:
        plan = _plan_call(q, k, v, cu_seqlens, max_seqlen, scale, out, config, backend,
                          validate, rotary)
        if key is not None:
            if len(_plans) >= MAX_PLANS:
                _plans.clear()
            _plans[key] = plan
    if out is not None and not compiling:  # (addresses: none while tracing)
        _check_out_overlap(out, q, k, v)
    if plan.backend != "triton":
        if rotary is not None:  # (other backends cannot fuse it: vitune's pass first)
            q, k = rotated(q, *rotary), rotated(k, *rotary)
        return RUNNERS[plan.backend](q, k, v, cu_seqlens, max_seqlen, plan.scale, out)
    if compiling:  # one opaque custom op in the graph
        return call_op(q, k, v, out, cu_seqlens, plan.scale, plan.config, rotary)
    if out is None:  # (contiguous: the strides the plan's launch was made for)
        out = torch.empty_like(q, memory_format=torch.contiguous_format)
    return run_launch(plan.launch, q, k, v, out, cu_seqlens, rotary=rotary)


@dataclass(frozen=True)
class _Plan:
    """What a call does once its arguments passed the checks: the backend, the kernel
    config and its launch's arguments (for "triton"; no launch when tracing) and the
    softmax scale."""

    backend: str
    config: KernelConfig | None
    scale: float
    launch: Launch | None = None


# Call signature -> plan. The signature holds everything the checks and the decision read
# (dtypes, devices, shapes, strides, the scalar arguments and their types), so a repeated
# call skips both: this is the hot path of a serving process (selector issue: < 10 us).
# Calls that validate, trace under torch.compile, pass a dict config or tensors that require
# grad (the check depends on the grad mode) always take the checked path.
_plans: dict[tuple, _Plan] = {}
MAX_PLANS = 4096

# os.environ.get re-encodes the key on every call (about 1 us, a tenth of the hot path's
# budget); the encoded key is looked up in the mapping os.environ keeps in sync instead.
_ENV_DATA = getattr(os.environ, "_data", None)
_ENV_KEY = os.environ.encodekey(VALIDATE_ENV) if hasattr(os.environ, "encodekey") else None


def validate_from_env() -> bool:
    """Whether VITUNE_VALIDATE asks for the synchronising checks (read on every call)."""
    if not isinstance(_ENV_DATA, dict) or _ENV_KEY is None:
        return _env_flag_slow()
    raw = _ENV_DATA.get(_ENV_KEY)
    return raw is not None and os.environ.decodevalue(raw) not in ("", "0")


def _env_flag_slow() -> bool:
    return os.environ.get(VALIDATE_ENV, "0") not in ("", "0")


def _plan_call(q, k, v, cu_seqlens, max_seqlen, scale, out, config, backend,
               validate, rotary=None) -> _Plan:
    """Check every argument (raising a clear error naming the bad one) and decide."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {list(BACKENDS)}")
    if config is not None and backend not in ("auto", "triton"):
        raise ValueError(f"config applies to vitune's Triton kernel, not backend={backend!r}")
    _check_tensors(q, k, v, cu_seqlens)
    if rotary is not None:
        _check_rotary(rotary, q, cu_seqlens)
    head_dim = q.shape[-1]
    if out is not None:
        _check_out(out, q)
    scale = _check_scale(scale, head_dim)
    max_seqlen = _check_max_seqlen(max_seqlen)
    if validate:
        _validate_segments(q, cu_seqlens, max_seqlen)
    if isinstance(config, dict):
        config = KernelConfig.from_dict(config)
    if config is not None and not isinstance(config, KernelConfig):
        raise TypeError(
            f"config must be a KernelConfig, a dict or None, got {type(config).__name__}")
    device_index = -1 if q.device.index is None else q.device.index
    length_key = _length_key(q, cu_seqlens, max_seqlen)
    chosen = backend
    if backend == "auto":
        chosen = "triton" if config is not None else _auto_backend(
            q.device.type, device_index, head_dim, q.dtype, length_key, rotary is not None,
            out is not None)
        if not _can_run(chosen, q, cu_seqlens, max_seqlen):
            chosen = "triton"
    if chosen != "triton":
        return _Plan(chosen, None, scale)
    if q.dtype == torch.bfloat16 and kernel_is_interpreted():
        raise TypeError("the Triton interpreter computes bfloat16 matrix products wrongly "
                        "(TRITON_INTERPRET=1): use float16 or float32 there, or a GPU "
                        "without the interpreter")
    # A new output is contiguous and freshly allocated: strides multiples of head_dim
    # (itself of 8), base aligned. Base addresses are unknown while tracing: the custom op
    # checks them when it runs (ops.py).
    tracing = torch.compiler.is_compiling()
    given = (q, k, v) if out is None else (q, k, v, out)
    aligned = tensor_strides_aligned(*given) and (tracing or tensor_bases_aligned(*given))
    cfg = KernelConfig(*_decide_config(
        q.device.type, device_index, head_dim, q.dtype, length_key,
        None if config is None else config.as_tuple(), aligned,
        (q.stride(), k.stride(), v.stride(), None if out is None else out.stride()),
        rotary is not None))
    if tracing:  # the custom op launches at run time
        return _Plan("triton", cfg, scale)
    if q.device.type == "cuda":  # (a process's first GPU plan logs it, where it applies)
        note_rules_version(device_arch(q.device).name)
    # The plan holds the launch's arguments (strides, grid, constants): a repeated call
    # only looks its plan up and launches, cheaper than planning the launch again.
    out_like = out if out is not None else torch.empty_like(
        q, memory_format=torch.contiguous_format)
    return _Plan("triton", cfg, scale,
                 plan_launch(q, k, v, out_like, cu_seqlens, scale, cfg, rotary))


def _can_run(backend: str, q: torch.Tensor, cu_seqlens: torch.Tensor | None,
             max_seqlen: int | None) -> bool:
    """Whether a measured winner applies to this call, from shapes alone (no sync): SDPA's
    wins were measured on equal segment lengths; the varlen kernels need max_seqlen and CUDA."""
    if backend.startswith("sdpa"):
        return cu_seqlens is None or equal_segments(q, cu_seqlens, max_seqlen)
    if backend in ("varlen", "flash_attn"):
        return cu_seqlens is not None and max_seqlen is not None and q.device.type == "cuda"
    return True


def clear_decision_cache() -> None:
    _plans.clear()


on_clear(clear_decision_cache)  # (plans hold the selector's answers: cleared with them)


def _check_tensors(q: object, k: object, v: object, cu_seqlens: object) -> None:
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    assert isinstance(q, torch.Tensor) and isinstance(k, torch.Tensor)
    assert isinstance(v, torch.Tensor)
    if q.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"q has dtype {q.dtype}; supported: float16, bfloat16, float32")
    for name, x in (("k", k), ("v", v)):
        if x.dtype != q.dtype:
            raise TypeError(f"{name} has dtype {x.dtype} but q has {q.dtype}; they must match")
        if x.device != q.device:
            raise ValueError(f"{name} is on {x.device} but q is on {q.device}")
    # (The interpreter also takes CUDA tensors, copying them to the host and back.)
    if q.device.type != "cuda" and not kernel_is_interpreted():
        raise ValueError(
            f"q is on {q.device}: the Triton kernel needs CUDA tensors (or TRITON_INTERPRET=1 "
            "set before vitune is imported, to run it on the CPU)"
        )
    layout = "packed [total_tokens, heads, head_dim]" if cu_seqlens is not None else \
        "batched [batch, seq, heads, head_dim] (cu_seqlens is None)"
    rank = 3 if cu_seqlens is not None else 4
    if q.dim() != rank:
        raise ValueError(f"q has shape {tuple(q.shape)}: expected {layout}")
    for name, x in (("k", k), ("v", v)):
        if x.shape != q.shape:
            raise ValueError(f"{name} has shape {tuple(x.shape)} but q has {tuple(q.shape)}")
    head_dim = q.shape[-1]
    if head_dim not in HEAD_DIMS:
        raise ValueError(f"head_dim={head_dim} is not supported: use a multiple of 8 in [32, 256]")
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.stride(-1) != 1 and x.shape[-1] > 1:
            raise ValueError(
                f"{name} has stride {x.stride(-1)} on head_dim; it must be 1 (other axes may "
                "have any stride; vitune never copies its inputs)"
            )
    if q.requires_grad or k.requires_grad or v.requires_grad:
        if torch.is_grad_enabled():
            raise NotImplementedError(
                "vision_attention is forward-only: call it under torch.no_grad() or "
                "torch.inference_mode(), or detach q, k and v"
            )
    if cu_seqlens is not None:
        _check_cu_seqlens(cu_seqlens, q)


def _check_cu_seqlens(cu_seqlens: object, q: torch.Tensor) -> None:
    if not isinstance(cu_seqlens, torch.Tensor):
        raise TypeError(
            f"cu_seqlens must be a torch.Tensor or None, got {type(cu_seqlens).__name__}")
    if cu_seqlens.dtype != torch.int32:
        raise TypeError(f"cu_seqlens has dtype {cu_seqlens.dtype}; it must be torch.int32")
    if cu_seqlens.dim() != 1:
        raise ValueError(f"cu_seqlens has shape {tuple(cu_seqlens.shape)}; it must be 1-D")
    if cu_seqlens.numel() < 2:
        raise ValueError(
            f"cu_seqlens has {cu_seqlens.numel()} entries; it needs segments + 1 >= 2 "
            "(e.g. [0, total_tokens])"
        )
    if cu_seqlens.device != q.device:
        raise ValueError(f"cu_seqlens is on {cu_seqlens.device} but q is on {q.device}")
    if cu_seqlens.stride(0) != 1:
        raise ValueError("cu_seqlens must be contiguous (stride 1)")


def _check_rotary(rotary: object, q: torch.Tensor, cu_seqlens: torch.Tensor | None) -> None:
    if not isinstance(rotary, (tuple, list)) or len(rotary) != 2 or not all(
            isinstance(x, torch.Tensor) for x in rotary):
        raise TypeError("rotary must be a (cos, sin) pair of tensors or None, got "
                        f"{type(rotary).__name__}")
    cos, sin = rotary
    head_dim = q.shape[-1]
    if cu_seqlens is not None:
        shapes = [(q.shape[0], head_dim)]
        expected = f"[total_tokens, head_dim] = {[q.shape[0], head_dim]}"
    else:
        batch, seq = q.shape[0], q.shape[1]
        shapes = [(seq, head_dim), (batch, seq, head_dim)]
        expected = f"[seq, head_dim] = {[seq, head_dim]} or [batch, seq, head_dim] = " \
                   f"{[batch, seq, head_dim]}"
    for name, x in (("cos", cos), ("sin", sin)):
        if x.dtype not in SUPPORTED_DTYPES:
            raise TypeError(f"rotary {name} has dtype {x.dtype}; supported: float16, "
                            "bfloat16, float32")
        if x.device != q.device:
            raise ValueError(f"rotary {name} is on {x.device} but q is on {q.device}")
        if tuple(x.shape) not in shapes:
            raise ValueError(f"rotary {name} has shape {tuple(x.shape)}: expected {expected}")
        if x.stride(-1) != 1 and head_dim > 1:
            raise ValueError(f"rotary {name} has stride {x.stride(-1)} on head_dim; it must be 1")
        if x.requires_grad and torch.is_grad_enabled():
            raise NotImplementedError("vision_attention is forward-only: rotary cos and sin "
                                      "must not require grad (or call under torch.no_grad())")
    if cos.shape != sin.shape or cos.stride() != sin.stride() or cos.dtype != sin.dtype:
        raise ValueError(
            f"rotary cos and sin must match in shape, strides and dtype; got cos "
            f"{tuple(cos.shape)} {cos.stride()} {cos.dtype}, sin {tuple(sin.shape)} "
            f"{sin.stride()} {sin.dtype}")
    if head_dim % 2:
        raise ValueError(f"rotary needs an even head_dim, got {head_dim}")


def _check_out(out: object, q: torch.Tensor) -> None:
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"out must be a torch.Tensor or None, got {type(out).__name__}")
    if out.shape != q.shape:
        raise ValueError(f"out has shape {tuple(out.shape)} but q has {tuple(q.shape)}")
    if out.dtype != q.dtype:
        raise TypeError(f"out has dtype {out.dtype} but q has {q.dtype}")
    if out.device != q.device:
        raise ValueError(f"out is on {out.device} but q is on {q.device}")
    if out.stride(-1) != 1:
        raise ValueError(f"out has stride {out.stride(-1)} on head_dim; it must be 1")
    for axis, (size, stride) in enumerate(zip(out.shape, out.stride(), strict=True)):
        if size > 1 and stride == 0:
            raise ValueError(f"out has stride 0 on axis {axis}: its rows would overwrite "
                             "each other")
    if _nested_axes(out) is None:
        raise ValueError(f"out's axes overlap in memory (strides {out.stride()} for shape "
                         f"{tuple(out.shape)}): its elements would overwrite each other")


def _nested_axes(x: torch.Tensor) -> list[tuple[int, int]] | None:
    """(stride, size) of x's axes of size > 1, largest stride first, if each stride is past
    the span of the smaller ones (as in every view of a dense tensor: no two indices share
    an element); else None."""
    return _nested(tuple(x.shape), x.stride())


def _nested(shape: tuple[int, ...], strides: tuple[int, ...]) -> list[tuple[int, int]] | None:
    axes = sorted((s, n) for s, n in zip(strides, shape, strict=True) if n > 1)
    span = 0
    for stride, size in axes:
        if stride <= span:
            return None
        span += stride * (size - 1)
    return axes[::-1]


def _check_out_overlap(out: torch.Tensor, q: torch.Tensor, k: torch.Tensor,
                       v: torch.Tensor) -> None:
    """out shares no element with k or v, and with q none unless it is q itself (each
    program reads its own query rows before writing them). Reads addresses, so it runs on
    every call that passes `out` (a few microseconds; none where storages differ)."""
    storage = out.untyped_storage().data_ptr()
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.untyped_storage().data_ptr() != storage:
            continue
        if name == "q" and x.data_ptr() == out.data_ptr() and x.stride() == out.stride():
            continue
        if _share_an_element(out, x):
            raise ValueError(f"out overlaps {name} in memory: it must not share elements "
                             "with k or v, and may be q itself but not part of it")


def _share_an_element(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two views of one storage share an element (cached on their geometry: the
    answer depends on shapes, strides and the distance between them alone)."""
    return _views_share(tuple(a.shape), a.stride(), tuple(b.shape), b.stride(),
                        b.data_ptr() - a.data_ptr(), a.element_size())


@functools.lru_cache(maxsize=256)
def _views_share(shape_a: tuple[int, ...], strides_a: tuple[int, ...],
                 shape_b: tuple[int, ...], strides_b: tuple[int, ...], offset: int,
                 size: int) -> bool:
    """Views a (at 0) and b (`offset` bytes after it) of elements of `size` bytes: exact
    for views of one shape and strides (slices of a fused buffer), else whether their byte
    ranges meet."""
    def end(shape, strides):
        return size * (1 + sum(s * (n - 1) for s, n in zip(strides, shape, strict=True)))

    if end(shape_a, strides_a) <= offset or offset + end(shape_b, strides_b) <= 0:
        return False
    axes = _nested(shape_a, strides_a)
    if shape_a != shape_b or strides_a != strides_b or axes is None:
        return True
    delta, rest = divmod(abs(offset), size)
    return rest == 0 and _reachable(delta, axes)


def _reachable(delta: int, axes: list[tuple[int, int]]) -> bool:
    """Whether delta = sum(d_i * stride_i) with |d_i| < size_i (axes nested, largest first):
    the smaller axes span less than one step of the largest, so at most two d's fit."""
    if not axes:
        return delta == 0
    (stride, size), rest = axes[0], axes[1:]
    span = sum(s * (n - 1) for s, n in rest)
    low = max(-(size - 1), -((span - delta) // stride))
    high = min(size - 1, (delta + span) // stride)
    return any(_reachable(delta - d * stride, rest) for d in range(low, high + 1))


def _check_scale(scale: object, head_dim: int) -> float:
    if scale is None:
        return head_dim ** -0.5
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a float or None, got {type(scale).__name__}")
    try:
        value = float(scale)
    except OverflowError:
        raise ValueError("scale must be finite, got an int too large for a float") from None
    if not math.isfinite(value):
        raise ValueError(f"scale must be finite, got {scale}")
    return value


def _check_max_seqlen(max_seqlen: object) -> int | None:
    if max_seqlen is None:
        return None
    if isinstance(max_seqlen, torch.Tensor):
        raise TypeError(
            "max_seqlen must be a Python int (a tensor would need a device sync); "
            "pass None if it is not known on the host"
        )
    if isinstance(max_seqlen, bool) or not isinstance(max_seqlen, int):
        raise TypeError(f"max_seqlen must be an int or None, got {type(max_seqlen).__name__}")
    if max_seqlen < 0:
        raise ValueError(f"max_seqlen must be >= 0, got {max_seqlen}")
    if max_seqlen > INT32_MAX:  # (token counts and cu_seqlens are int32)
        shown = max_seqlen if max_seqlen < 10 ** 12 else f"<{max_seqlen.bit_length()}-bit int>"
        raise ValueError(f"max_seqlen={shown} is past int32 (2^31 - 1): no segment can be "
                         "that long")
    return max_seqlen


def _validate_segments(q: torch.Tensor, cu_seqlens: torch.Tensor | None,
                       max_seqlen: int | None) -> None:
    """The checks that read cu_seqlens' values, and so synchronise with the device."""
    if cu_seqlens is None:
        return
    cu = cu_seqlens.tolist()
    if cu[0] != 0:
        raise ValueError(f"cu_seqlens must start at 0, starts at {cu[0]}")
    lengths = [b - a for a, b in zip(cu[:-1], cu[1:], strict=True)]
    if any(n < 0 for n in lengths):
        at = next(i for i, n in enumerate(lengths) if n < 0)
        raise ValueError(
            f"cu_seqlens must be non-decreasing: entry {at + 1} ({cu[at + 1]}) < entry {at} "
            f"({cu[at]})"
        )
    if cu[-1] != q.shape[0]:
        raise ValueError(f"cu_seqlens ends at {cu[-1]} but q has {q.shape[0]} tokens")
    if max_seqlen is not None and max_seqlen < max(lengths):
        raise ValueError(f"max_seqlen={max_seqlen} is below the longest segment ({max(lengths)})")


def _auto_backend_uncached(device_type: str, device_index: int, head_dim: int,
                           dtype: torch.dtype, length_key: int, rotary: bool = False,
                           with_out: bool = False) -> str:
    """The backend measured fastest for this GPU and bucket ("triton" when untuned), for a
    call with or without rotary and out= (Choice.backend_for)."""
    device = torch.device(device_type, device_index) if device_index >= 0 else \
        torch.device(device_type)
    choice = choose(device_gpu(device), head_dim, dtype, 2 ** (length_key / 4), rotary)
    return choice.backend_for(rotary, with_out)


def _decide_config_uncached(device_type: str, device_index: int, head_dim: int,
                            dtype: torch.dtype, length_key: int, config: tuple | None,
                            layout_aligned: bool, strides: tuple,
                            rotary: bool = False) -> tuple:
    """The kernel config's fields for this call: the given config checked against the
    rules, or the selector's choice. Plain values in and out, so torch.compile runs it once
    at trace time and keeps the result as a constant."""
    length = 2 ** (length_key / 4)
    device = torch.device(device_type, device_index) if device_index >= 0 else \
        torch.device(device_type)
    gpu = device_gpu(device)
    if config is None:
        cfg = choose(gpu, head_dim, dtype, length, rotary).config
    else:
        cfg = KernelConfig(*config)
        reason = check_config(cfg, head_dim, dtype, gpu.arch, rotary)
        if reason is not None:
            raise ValueError(f"config {cfg.short()} is invalid for head_dim={head_dim}, "
                             f"{dtype} on {gpu.arch.name}: {reason}")
    fitted = fit_to_layout(cfg, head_dim, dtype, gpu.arch, layout_aligned)
    if rotary and config is None:  # (the window kernel stages more with rotary)
        fitted = fit_to_rotary(fitted, head_dim, dtype, gpu.arch)
    if fitted != cfg and config is not None:
        raise ValueError(
            f"config {cfg.short()} splits head_dim={head_dim} on the wgmma path, which "
            "needs every stride of q, k, v and out to be a multiple of 8 elements and "
            f"their base addresses 16-byte aligned; got strides (q, k, v, out) {strides}"
            ": use head_split=False, block_m=32 or num_warps=2")
    return fitted.as_tuple()


def _constant_under_compile(fn):
    """Mark `fn` as torch.compiler.assume_constant_result does (torch.compile runs it once at
    trace time and keeps the result), without the import of torch._dynamo that the call
    makes: 1-3 s in every process that imports vitune, such as each tuning worker.
    tests/test_compile.py checks that the mark is still torch's."""
    fn._dynamo_marked_constant = True
    return fn


# Eager calls reach these once per call signature (the plan cache above them, the
# selector's cache below); under torch.compile each runs once at trace time and its result
# is a constant of the graph.
_auto_backend_const = _constant_under_compile(_auto_backend_uncached)
_decide_config_const = _constant_under_compile(_decide_config_uncached)


def _auto_backend(*args) -> str:
    if torch.compiler.is_compiling():
        return _auto_backend_const(*args)
    return _auto_backend_uncached(*args)


def _decide_config(*args) -> tuple:
    if torch.compiler.is_compiling():
        return _decide_config_const(*args)
    return _decide_config_uncached(*args)


def _length_key(q: torch.Tensor, cu_seqlens: torch.Tensor | None,
                max_seqlen: int | None) -> int:
    """The regime length on the selector's grid, so decisions cache per key."""
    return length_key(_regime_length(q, cu_seqlens, max_seqlen))


def _regime_length(q: torch.Tensor, cu_seqlens: torch.Tensor | None,
                   max_seqlen: int | None) -> float:
    """A segment length that tells windows from full attention without a device sync:
    max_seqlen when given, else the mean segment length from the shapes."""
    if max_seqlen is not None:
        return float(max_seqlen)
    if cu_seqlens is None:
        return float(q.shape[1])
    return q.shape[0] / max(cu_seqlens.numel() - 1, 1)
