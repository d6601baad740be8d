"""configs/<gpu>.yaml: the versioned schema, its validation, and atomic merge-writes.

A file records which backend and kernel config won per tuning bucket on one GPU (for a
call that lets the backend allocate its result, and `backend_with_out` for one that passes
out=, where another backend's result must be copied), the throughput measured for it and
for its peers in the same run, and the provenance of each bucket: the kernel hash, Triton,
torch and CUDA versions, card and date of the run that tuned it (version 2; a version 1
file has one provenance for the whole file, which loading gives to each of its buckets).
Validation accepts known keys only and values inside the search space, so no file can make
a kernel read out of bounds; every error names the file and the entry at fault.
"""

from __future__ import annotations

import datetime
import math
import os
import reprlib
import stat
from pathlib import Path

import yaml

from vitune.kernels.vision_attn.space import HEAD_DIMS, SEARCH_SPACE, KernelConfig
from vitune.runtime.atomic import write_atomic
from vitune.runtime.backend_names import TUNED_BACKENDS

SCHEMA_VERSION = 2  # what the tuner writes
READ_VERSIONS = (1, 2)  # what loads (a version 1 file is upgraded as it loads)
MAX_CONFIG_BYTES = 1 << 20  # a tuned file of every head dim, dtype and regime is ~100 KB
_REPR = reprlib.Repr()  # (keyword arguments only from Python 3.12)
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 4, 4, 40, 40
DTYPES = ("float16", "bfloat16", "float32")
REGIMES = ("window", "full")
BACKENDS = TUNED_BACKENDS  # a bucket's fastest: a backend its calls can run

TOP_KEYS = {"schema_version", "gpu", "interpreter", "provenance", "buckets"}
# A run's provenance, in the order it is written (version 1: the file's; version 2: each
# bucket's).
PROVENANCE_KEYS = ("kernel_hash", "triton", "torch", "cuda", "python", "device_name",
                   "capability", "sms", "date")
# Version 2's file-level provenance: the card alone (the GPU key names one product).
CARD_KEYS = ("device_name", "capability", "sms")
BUCKET_KEYS = {"head_dim", "dtype", "regime", "seqlen", "rotary", "backend", "config",
               "tflops", "default_tflops", "peers", "trials", "study", "date",
               "backend_with_out", "peers_with_out"}
# Version 2 moves a bucket's date into the bucket's own provenance.
BUCKET_KEYS_BY_VERSION = {1: BUCKET_KEYS, 2: (BUCKET_KEYS - {"date"}) | {"provenance"}}
TRIAL_KEYS = {"total", "ran", "complete", "failed", "rejected", "repeats"}
# Kernel choices added to the search space after files were written: a file without one
# predates it and ran with KernelConfig's default (the choice off).
LATER_CONFIG_FIELDS = {"tma", "windows"}


class ConfigFileError(ValueError):
    """A configs YAML file that cannot be used; the message names the file and entry."""


def bucket_key(head_dim: int, dtype: str, regime: str, seqlen: int,
               rotary: bool = False) -> str:
    """A bucket's name; `rotary` buckets were tuned with the rotary embedding fused."""
    return f"d{head_dim}-{dtype}-{regime}-L{seqlen}" + ("-rotary" if rotary else "")


def load_config_file(path: str | Path) -> dict:
    """Read and validate one file, as a version 2 document (see `upgraded`); raises
    ConfigFileError naming the fault."""
    return upgraded(read_config_document(path))


def read_config_document(path: str | Path) -> dict:
    """Read and validate one file, as it is written (version 1 or 2); raises
    ConfigFileError naming the fault."""
    path = Path(path)
    text = read_config_text(path)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigFileError(f"{path}: not a configs file: nested too deeply") from None
    validate_document(doc, str(path))
    return doc


def upgraded(doc: dict) -> dict:
    """A valid document as version 2. A version 1 file's provenance (one run's: merging
    stamped the latest run's over older buckets) becomes each bucket's own, dated with the
    bucket's own date where it has one; the file keeps the card."""
    if doc["schema_version"] == 2:
        return doc
    run = doc.get("provenance") or {}
    buckets = []
    for old in doc.get("buckets", []):
        bucket = {k: v for k, v in old.items() if k != "date"}
        provenance = {**run, **({"date": old["date"]} if old.get("date") else {})}
        if provenance := run_provenance(provenance):
            bucket["provenance"] = provenance
        buckets.append(bucket)
    new = {"schema_version": 2, "gpu": doc["gpu"]}
    if "interpreter" in doc:
        new["interpreter"] = doc["interpreter"]
    if card := card_provenance(run):
        new["provenance"] = card
    new["buckets"] = buckets
    return new


def run_provenance(run: dict) -> dict:
    """A bucket's provenance from a run's environment (its kernel hash included): the known
    entries that hold a value, in the order they are written."""
    return _ordered(run, PROVENANCE_KEYS)


def card_provenance(run: dict) -> dict:
    """A version 2 file's own provenance from a run's environment: the card."""
    return _ordered(run, CARD_KEYS)


def _ordered(mapping: dict, keys: tuple[str, ...]) -> dict:
    return {k: mapping[k] for k in keys if mapping.get(k) is not None}


def bucket_provenance(bucket: dict) -> dict:
    """The provenance of the run that tuned a bucket of a loaded (version 2) document; {}
    where the file does not say."""
    return bucket.get("provenance") or {}


def read_config_text(path: Path) -> str:
    """The file's text, reading nothing it cannot bound: a regular file (checked on the
    open descriptor: no FIFO to block on, no device to read forever) of at most
    MAX_CONFIG_BYTES, in UTF-8."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ConfigFileError(f"{path}: not a regular file")
    with os.fdopen(fd, "rb") as f:
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigFileError(f"{path}: {info.st_size} bytes, over the "
                                  f"{MAX_CONFIG_BYTES}-byte limit of a configs file")
        try:
            data = f.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise ConfigFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigFileError(f"{path}: over the {MAX_CONFIG_BYTES}-byte limit of a configs "
                              "file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigFileError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _short(value: object) -> str:
    """A bounded repr for messages: a hostile file's values (YAML aliases nest lists
    exponentially) must not be expanded in full."""
    return _REPR.repr(value)


def validate_document(doc: object, where: str) -> None:
    def fail(entry: str, problem: str) -> None:
        raise ConfigFileError(f"{where}: {entry}: {problem}")

    if not isinstance(doc, dict):
        fail("top level", f"expected a mapping, got {type(doc).__name__}")
    assert isinstance(doc, dict)
    _known_keys(doc, TOP_KEYS, "top level", fail)
    version = doc.get("schema_version")
    if type(version) is not int or version not in READ_VERSIONS:
        fail("schema_version", f"expected one of {list(READ_VERSIONS)}, got {_short(version)}")
    if not isinstance(doc.get("gpu"), str) or not doc["gpu"]:
        fail("gpu", "expected a non-empty GPU key such as 'h100'")
    if not isinstance(doc.get("interpreter", False), bool):
        fail("interpreter", "expected true or false")
    _validate_provenance(doc.get("provenance", {}),
                         set(PROVENANCE_KEYS if version == 1 else CARD_KEYS), "provenance",
                         fail)
    buckets = doc.get("buckets", [])
    if not isinstance(buckets, list):
        fail("buckets", "expected a list")
    seen = set()
    for i, bucket in enumerate(buckets):
        entry = f"buckets[{i}]"
        key = _validate_bucket(bucket, entry, version, fail)
        if key in seen:
            fail(entry, f"duplicate bucket {key}")
        seen.add(key)


def _known_keys(mapping: dict, known: set[str], entry: str, fail) -> None:
    unknown = sorted(str(k) for k in set(mapping) - known)
    if unknown:
        fail(entry, f"unknown keys {unknown}")


def _validate_provenance(provenance: object, known: set[str], entry: str, fail) -> None:
    """A mapping of known names to plain values (versions, names, a date, a count)."""
    if not isinstance(provenance, dict):
        fail(entry, "expected a mapping")
    assert isinstance(provenance, dict)
    _known_keys(provenance, known, entry, fail)
    for name, value in provenance.items():
        if value is not None and not isinstance(value, (str, int, float, datetime.date)):
            fail(f"{entry}.{name}", f"{_short(value)} is not a version, name, date or number")


def _validate_bucket(bucket: object, entry: str, version: int, fail) -> str:
    if not isinstance(bucket, dict):
        fail(entry, "expected a mapping")
    assert isinstance(bucket, dict)
    known = BUCKET_KEYS_BY_VERSION[version]
    if version == 1 and "provenance" in bucket:
        fail(entry, "a bucket's own provenance needs schema_version 2")
    _known_keys(bucket, known, entry, fail)
    if "provenance" in bucket:
        _validate_provenance(bucket["provenance"], set(PROVENANCE_KEYS),
                             f"{entry}.provenance", fail)
    for name in ("head_dim", "dtype", "regime", "seqlen", "backend"):
        if name not in bucket:
            fail(entry, f"missing {name}")
    head_dim, seqlen = bucket["head_dim"], bucket["seqlen"]
    if type(head_dim) is not int or head_dim not in HEAD_DIMS:
        fail(f"{entry}.head_dim", f"{_short(head_dim)} is not a multiple of 8 in [32, 256]")
    if bucket["dtype"] not in DTYPES:
        fail(f"{entry}.dtype", f"{_short(bucket['dtype'])} is not one of {list(DTYPES)}")
    if bucket["regime"] not in REGIMES:
        fail(f"{entry}.regime", f"{_short(bucket['regime'])} is not one of {list(REGIMES)}")
    if type(seqlen) is not int or not 1 <= seqlen <= 1 << 24:
        fail(f"{entry}.seqlen", f"{_short(seqlen)} is not an int in [1, 16777216]")
    if not isinstance(bucket.get("rotary", False), bool):
        fail(f"{entry}.rotary", f"{_short(bucket['rotary'])} is not true or false")
    if bucket["backend"] not in BACKENDS:
        fail(f"{entry}.backend", f"{_short(bucket['backend'])} is not one of {list(BACKENDS)}")
    if "backend_with_out" in bucket and bucket["backend_with_out"] not in BACKENDS:
        fail(f"{entry}.backend_with_out",
             f"{_short(bucket['backend_with_out'])} is not one of {list(BACKENDS)}")
    if bucket["backend"] == "triton" or "config" in bucket:
        config = bucket.get("config")
        if not isinstance(config, dict):
            fail(f"{entry}.config", "expected a mapping of kernel config fields")
        assert isinstance(config, dict)
        _known_keys(config, set(SEARCH_SPACE), f"{entry}.config", fail)
        for name, choices in SEARCH_SPACE.items():
            if name not in config:
                if name in LATER_CONFIG_FIELDS:
                    continue
                fail(f"{entry}.config", f"missing {name}")
            value = config[name]
            if type(value) is not type(choices[0]) or value not in choices:
                fail(f"{entry}.config.{name}", f"{_short(value)} is not one of {list(choices)}")
    for name in ("tflops", "default_tflops"):
        if name in bucket and not _is_rate(bucket[name]):
            fail(f"{entry}.{name}", f"{_short(bucket[name])} is not a finite number >= 0")
    for name in ("peers", "peers_with_out"):
        peers = bucket.get(name, {})
        if not isinstance(peers, dict) or not all(
                isinstance(k, str) and _is_rate(v) for k, v in peers.items()):
            fail(f"{entry}.{name}", "expected a mapping of backend name to TFLOP/s")
    trials = bucket.get("trials", {})
    if not isinstance(trials, dict):
        fail(f"{entry}.trials", "expected a mapping")
    _known_keys(trials, TRIAL_KEYS, f"{entry}.trials", fail)
    return bucket_key(head_dim, bucket["dtype"], bucket["regime"], seqlen,
                      bucket.get("rotary", False))


def _is_rate(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)


def rule_faults(doc: dict, where: str) -> list[str]:
    """One line per bucket whose config breaks the kernel rules (shared memory, registers,
    miscompiles) on the file's GPU architecture: from the interpreter flag, the recorded
    compute capability, or the GPU key of a known product. [] where none is known."""
    import torch

    from vitune.kernels.arch import INTERPRETER, arch_for_capability
    from vitune.kernels.vision_attn.space import check_config
    from vitune.runtime.gpu import KNOWN_CAPABILITY

    capability = str(doc.get("provenance", {}).get("capability") or "")
    if doc.get("interpreter", False):
        arch = INTERPRETER
    elif capability.replace(".", "", 1).isdigit() and "." in capability:
        arch = arch_for_capability(tuple(int(x) for x in capability.split(".")))
    elif doc["gpu"] in KNOWN_CAPABILITY:
        arch = arch_for_capability(KNOWN_CAPABILITY[doc["gpu"]])
    else:
        return []
    faults = []
    for i, bucket in enumerate(doc.get("buckets", [])):
        cfg = bucket_config(bucket)
        if cfg is None:
            continue
        reason = check_config(cfg, bucket["head_dim"], getattr(torch, bucket["dtype"]), arch,
                              bucket.get("rotary", False))
        if reason is not None:
            faults.append(f"{where}: buckets[{i}].config: {cfg.short()} breaks the kernel "
                          f"rules on {arch.name}: {reason}")
    return faults


def bucket_config(bucket: dict) -> KernelConfig | None:
    return KernelConfig.from_dict(bucket["config"]) if "config" in bucket else None


def merge_buckets(old: list[dict], new: list[dict]) -> list[dict]:
    """Buckets of `new` replace those of `old` with the same key; the others are kept as
    they are, their own provenance with them."""
    def key(b: dict) -> str:
        return bucket_key(b["head_dim"], b["dtype"], b["regime"], b["seqlen"],
                          b.get("rotary", False))

    merged = {key(b): b for b in old}
    merged.update({key(b): b for b in new})
    return sorted(merged.values(), key=lambda b: (b["head_dim"], b["dtype"], b["regime"],
                                                  b.get("rotary", False), b["seqlen"]))


def write_config_file(path: str | Path, doc: dict) -> None:
    """Validate, then replace `path` atomically: readers see the old file or the new one.
    Whatever version `doc` is, the file is written as version 2."""
    path = Path(path)
    validate_document(doc, str(path))
    write_atomic(path, yaml.safe_dump(upgraded(doc), sort_keys=False))
