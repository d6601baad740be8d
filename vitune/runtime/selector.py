"""Pick the kernel config for a call from the tuned YAML files, falling back sensibly.

Sources, in order: the file of this exact GPU (`<key>.yaml`), then a file of the same
architecture (compute capability major), then the built-in heuristic. At each level, user
files come first (`vitune.load_configs(path)`, the folders in `VITUNE_CONFIG_DIR`, then
the per-user folder `vitune tune` writes to by default: `user_config_dir()`), then the
shipped ones. Within a file the lookup is exact on head_dim, dtype and regime and nearest in log
space on the segment length. A missing or broken file never fails a call: it is skipped
with one warning naming the file and the fault. A bucket tuned for another kernel hash or
Triton version than the installed ones is still used, with one warning per file (its
config runs correctly, but may no longer be the fastest). Decisions are cached per key.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from vitune.kernels.vision_attn.identity import kernel_hash
from vitune.kernels.vision_attn.space import (
    WINDOW_MAX_SEQLEN,
    KernelConfig,
    check_config,
    default_config,
)
from vitune.runtime.backend_names import PEER_BACKENDS
from vitune.runtime.gpu import MEMORY_GBPS, GpuIdentity
from vitune.runtime.schema import (
    ConfigFileError,
    bucket_config,
    bucket_provenance,
    load_config_file,
)

log = logging.getLogger(__name__)
CONFIG_DIR_ENV = "VITUNE_CONFIG_DIR"
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "configs"


def user_config_dir() -> Path:
    """Where `vitune tune` writes by default and every later process looks:
    `$XDG_CONFIG_HOME/vitune`, else `~/.config/vitune`."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"),
                                                             ".config")
    return Path(base) / "vitune"


@dataclass(frozen=True)
class Choice:
    config: KernelConfig  # the Triton config (used whenever the backend is triton)
    level: str  # "exact GPU", "same architecture" or "built-in heuristic"
    backend: str = "triton"  # the fastest measured for the bucket
    path: str | None = None  # the file it came from
    bucket: str | None = None  # the bucket matched in that file
    tflops: float | None = None  # measured for that bucket when it was tuned
    rotary: bool = False  # the bucket was tuned with the rotary embedding fused
    # The fastest for a call that passes out=: another backend's result must then be copied
    # into it, while vitune's kernel writes it directly.
    backend_with_out: str = "triton"
    stale: str | None = None  # how the bucket's tuning differs from this installation

    def backend_for(self, rotary: bool = False, with_out: bool = False) -> str:
        """The backend `auto` runs for a call with or without rotary and out=. With rotary,
        only a bucket tuned with it (its peers timed with q and k rotated first) can name
        another backend than vitune's kernel, which fuses the rotary."""
        if self.rotary != rotary:
            return "triton"
        return self.backend_with_out if with_out else self.backend


_user_paths: list[Path] = []
_warned: set[str] = set()


def load_configs(path: str | os.PathLike) -> None:
    """Use the configs file, or the `<gpu>.yaml` files of a directory, before the shipped
    ones. Raises ConfigFileError at once for a file that does not validate."""
    path = Path(path)
    if path.is_dir():
        try:
            with os.scandir(path) as entries:
                next(entries, None)
        except OSError as exc:
            raise ConfigFileError(f"{path}: cannot list it: {exc.strerror or exc}") from None
    elif path.exists():
        load_config_file(path)
    else:
        raise ConfigFileError(f"{path}: no such file or directory")
    _user_paths.insert(0, path)
    clear_cache()


# Caches built on this one's answers (the public call's plans), cleared with it: they
# register here, since the selector sits below them and imports none of them.
_caches_above: list[Callable[[], None]] = []


def on_clear(clear: Callable[[], None]) -> None:
    """Run `clear` whenever the selector's cache is cleared (a new configs file in use)."""
    _caches_above.append(clear)


def clear_cache() -> None:
    _choose.cache_clear()
    _file.cache_clear()
    for clear in _caches_above:
        clear()


def length_key(seqlen: float) -> int:
    """A segment length on a quarter-octave grid: lengths within ~19% of each other share a
    cache entry (the nearest-bucket answer rarely differs inside that band)."""
    return round(math.log2(max(seqlen, 1.0)) * 4)


def choose(gpu: GpuIdentity, head_dim: int, dtype: torch.dtype, seqlen: float,
           rotary: bool = False) -> Choice:
    """The config for a call; `seqlen` is the longest (or typical) segment length. With
    `rotary`, buckets tuned with the rotary embedding fused come first in each file."""
    return _choose(gpu, head_dim, dtype, length_key(seqlen), rotary)


def candidate_files(gpu: GpuIdentity) -> list[tuple[str, Path]]:
    """(level, file) in the order they are tried. A folder that cannot be listed is
    skipped with one warning; every `*.yaml` entry is tried (reading it says what is wrong
    with one that is not a regular file)."""
    dirs = [Path(p) for p in os.environ.get(CONFIG_DIR_ENV, "").split(os.pathsep) if p]
    user = [p for p in _user_paths if not p.is_dir()]
    search_dirs = [p for p in _user_paths if p.is_dir()] + dirs + [user_config_dir(),
                                                                    SHIPPED_DIR]
    listings = {d: _listing(d) for d in search_dirs}
    exact = [p for p in user if p.stem == gpu.key]
    exact += [p for d in search_dirs for p in listings[d] if p.stem == gpu.key]
    others = [p for p in user if p.stem != gpu.key]
    others += [p for d in search_dirs for p in listings[d] if p.stem != gpu.key]
    return [("exact GPU", p) for p in exact] + [("same architecture", p) for p in others]


def _listing(folder: Path) -> list[Path]:
    """The folder's `*.yaml` entries, sorted; none (warned about once) where it cannot be
    listed, and none without a warning where it does not exist."""
    try:
        return sorted(folder.glob("*.yaml"))
    except OSError as exc:
        _warn_once(str(folder), f"vitune: ignoring a configs folder: {folder}: cannot list "
                                f"it: {exc.strerror or exc}")
        return []


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning("%s", message)


@functools.cache
def _choose(gpu: GpuIdentity, head_dim: int, dtype: torch.dtype, log_len: int,
            rotary: bool = False) -> Choice:
    seqlen = 2 ** (log_len / 4)
    regime = "window" if seqlen <= WINDOW_MAX_SEQLEN else "full"
    dtype_name = str(dtype).removeprefix("torch.")
    for level, path in candidate_files(gpu):
        doc = _file(path)
        if doc is None or doc.get("interpreter", False) != gpu.is_interpreter:
            continue
        if level == "same architecture" and not _same_architecture(doc, gpu):
            continue
        matches = [b for b in doc.get("buckets", []) if b["head_dim"] == head_dim
                   and b["dtype"] == dtype_name and b["regime"] == regime]
        # A call with rotary takes the buckets tuned with it, else the others (and the
        # runtime then fits their config to the rotary kernels' budget); one without, only
        # buckets tuned without it.
        same = [b for b in matches if b.get("rotary", False) == rotary]
        matches = same or ([b for b in matches if not b.get("rotary", False)] if rotary else [])
        if not matches:
            continue
        best = min(matches, key=lambda b: abs(math.log2(b["seqlen"]) - math.log2(seqlen)))
        cfg = bucket_config(best) or default_config(head_dim, dtype, gpu.arch, seqlen)
        reason = check_config(cfg, head_dim, dtype, gpu.arch)
        if reason is not None:
            _warn_once(f"{path}:{best['seqlen']}:{head_dim}:{dtype_name}:{regime}",
                       f"vitune: ignoring a bucket of {path} ({regime} L{best['seqlen']}): "
                       f"its config breaks the kernel rules on this GPU: {reason}")
            continue
        tuned_rotary = best.get("rotary", False)
        label = f"{regime} L{best['seqlen']}" + (" rotary" if tuned_rotary else "")
        stale = stale_reason(bucket_provenance(best))
        if stale is not None:
            _warn_once(f"stale:{path}",
                       f"vitune: {path}: bucket d{head_dim} {dtype_name} {label} was {stale}; "
                       "its configs are still used but may no longer be the fastest: run "
                       "`vitune tune` to tune for this installation")
        choice = Choice(cfg, level, best["backend"], str(path), label, best.get("tflops"),
                        tuned_rotary,
                        best.get("backend_with_out") or estimated_backend_with_out(best, gpu),
                        stale)
        log.info("vitune: d%d %s %s L~%d on %s: %s from %s", head_dim, dtype_name, regime,
                 seqlen, gpu.key, level, path)
        return choice
    choice = Choice(default_config(head_dim, dtype, gpu.arch, seqlen), "built-in heuristic")
    log.info("vitune: d%d %s %s L~%d on %s: built-in heuristic (no tuned bucket found)",
             head_dim, dtype_name, regime, seqlen, gpu.key)
    return choice


def estimated_backend_with_out(bucket: dict, gpu: GpuIdentity) -> str:
    """For a bucket tuned before calls with out= were measured: the backend that won
    without out= keeps such calls only if it still beats vitune's kernel once its result is
    copied into out (read and written at 80% of the GPU's peak bandwidth; no estimate and
    vitune's kernel for a GPU whose bandwidth is unknown)."""
    backend = bucket["backend"]
    gbps = MEMORY_GBPS.get(gpu.key)
    kernel_rate = bucket.get("tflops")
    peer_rate = max((rate for name, rate in bucket.get("peers", {}).items()
                     if PEER_BACKENDS.get(name) == backend), default=None)
    if backend == "triton" or gbps is None or not kernel_rate or not peer_rate:
        return "triton"
    # Per token and head: attention does 4 * seqlen * head_dim useful flops, the copy
    # moves 2 * head_dim elements; head_dim cancels out.
    element_bytes = 4 if bucket["dtype"] == "float32" else 2
    attention_s = 4 * bucket["seqlen"] / (peer_rate * 1e12)
    copy_s = 2 * element_bytes / (0.8 * gbps * 1e9)
    rate_with_copy = 4 * bucket["seqlen"] / (attention_s + copy_s) / 1e12
    return backend if rate_with_copy > kernel_rate else "triton"


def stale_reason(provenance: dict) -> str | None:
    """How a bucket's tuning run differs from this installation, e.g. "tuned for kernel
    a1f31d591b9e (installed 006bc6568931) and Triton 3.6.0 (installed 3.9.0)"; None where
    its kernel hash and Triton version match or the file does not record them."""
    import triton

    differences = []
    for name, what, installed in (("kernel_hash", "kernel", kernel_hash()),
                                  ("triton", "Triton", triton.__version__)):
        tuned = provenance.get(name)
        if tuned is not None and str(tuned) != installed:
            differences.append(f"{what} {tuned} (installed {installed})")
    return "tuned for " + " and ".join(differences) if differences else None


@functools.cache
def _file(path: Path) -> dict | None:
    """A validated file, or None (warned about once) when it cannot be used."""
    try:
        return load_config_file(path)
    except ConfigFileError as exc:
        _warn_once(str(path), f"vitune: ignoring a configs file: {exc}")
        return None


def _same_architecture(doc: dict, gpu: GpuIdentity) -> bool:
    capability = str(doc.get("provenance", {}).get("capability") or "")
    return gpu.capability is not None and capability.split(".")[0] == str(gpu.capability[0])
