"""Every use of Triton beyond its kernel language (`triton.jit`, `triton.language`) and the
launch helpers (`triton.cdiv`, `triton.next_power_of_2`), in one module: the interpreter
test, host-side tensor descriptors, warm-up compiles, the compile-only driver, ahead-of-time
compiles and the compiler's error types. The rest of vitune calls the small functions here,
so a Triton release that moves one of these internals is met in this file alone.

Differences between releases are gated on TRITON_VERSION, and where a release cannot do
what vitune needs, the error names the release that can (TritonVersionError). The floor,
MIN_TRITON, is the one pyproject.toml declares and CI's floor lane installs (.ci/run).
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch
import triton

log = logging.getLogger(__name__)

Version = tuple[int, int, int]

# Host-side tensor descriptors (triton.tools.tensor_descriptor.TensorDescriptor, the
# kernel's `desc.load`) came in 3.4; 3.3 had only an experimental, differently shaped API.
MIN_TRITON: Version = (3, 4, 0)
# The interpreter converts one-element arrays to Python ints (a kernel's `range` over a
# scalar argument); NumPy 2.4 refuses that conversion, and Triton does it the way NumPy 2.4
# takes from 3.7 on.
INTERPRETER_NUMPY_2_4: Version = (3, 7, 0)


class TritonVersionError(RuntimeError):
    """The installed Triton (or, with it, NumPy) cannot do what vitune needs."""


def parse_version(text: str) -> Version:
    """(major, minor, patch) of a release string: '3.4.0' -> (3, 4, 0); local builds and
    pre-releases ('3.5.0+git1a2b', '3.6.0rc1') by their numbers."""
    numbers = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if numbers is None:
        raise ValueError(f"not a release number: {text!r}")
    major, minor, patch = numbers.groups()
    return int(major), int(minor), int(patch or 0)


def version_text(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


TRITON_VERSION: Version = parse_version(triton.__version__)


def check_supported(version: Version = TRITON_VERSION) -> None:
    """ImportError naming both releases where `version` is below the declared floor."""
    if version < MIN_TRITON:
        raise ImportError(
            f"vitune needs Triton >= {version_text(MIN_TRITON)} (host-side tensor "
            f"descriptors, triton.tools.tensor_descriptor); Triton {version_text(version)} "
            f"is installed: pip install 'triton>={version_text(MIN_TRITON)}'")


check_supported()

from triton.tools.tensor_descriptor import TensorDescriptor  # noqa: E402  (3.4+: the gate)

# --- the interpreter -------------------------------------------------------------------


def is_interpreted(kernel: object) -> bool:
    """True when `kernel` (a @triton.jit function) runs through the interpreter: the
    environment had TRITON_INTERPRET=1 when its module was imported."""
    return not isinstance(kernel, triton.runtime.JITFunction)


def interpreter_problem(triton_version: Version = TRITON_VERSION,
                        numpy_version: Version | None = None) -> str | None:
    """Why the interpreter cannot run vitune's kernels with these releases, or None."""
    if numpy_version is None:
        import numpy

        numpy_version = parse_version(numpy.__version__)
    if triton_version < INTERPRETER_NUMPY_2_4 and numpy_version >= (2, 4, 0):
        return (f"the Triton {version_text(triton_version[:2])} interpreter cannot run "
                f"vitune's kernels with NumPy {version_text(numpy_version[:2])} (it turns "
                "one-element arrays into ints, which NumPy 2.4 refuses): install "
                f"'numpy<2.4' or 'triton>={version_text(INTERPRETER_NUMPY_2_4[:2])}'")
    return None


@functools.cache
def check_interpreter() -> None:
    """TritonVersionError where the interpreter cannot run the kernels (checked once)."""
    if problem := interpreter_problem():
        raise TritonVersionError(problem)


# --- launching and compiling -----------------------------------------------------------


# tensor_descriptor(base, shape, strides, block_shape): a host-side descriptor of a 2D view
# of `base` that the kernel loads `block_shape` tiles from (Hopper's tensor-memory
# accelerator). The class itself, not a wrapper: it is on every TMA launch's path.
tensor_descriptor = TensorDescriptor


def warmup_launcher(kernel: triton.runtime.JITFunction, grid: tuple[int, ...]) -> Callable:
    """A callable taking the kernel's arguments that compiles it for them (into Triton's
    on-disk cache) without running it. On meta tensors it compiles the launch the same
    tensors on a GPU would get: a meta tensor's address is 0, 16-byte aligned as a CUDA
    allocation is."""
    return functools.partial(kernel.warmup, grid=grid)


def compile_only_for(capability: tuple[int, int]) -> None:
    """From now on, this process's Triton JIT compiles for `capability` (e.g. (9, 0)) and
    touches no GPU: Triton's JIT asks its active driver for the current device, stream
    and target before it compiles, and a driver that answers with constants lets the
    JIT's own path compile. For warm-ups only: launching needs CUDA's driver."""
    from triton.runtime.driver import driver

    driver.set_active(_target_driver(tuple(capability)))


@functools.cache
def _target_driver(capability: tuple[int, int]):
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.driver import CudaDriver

    class TargetOnlyDriver(CudaDriver):
        """CUDA's driver, answering the JIT's questions with constants. Its own __init__ is
        skipped: it loads helpers linked against the CUDA driver library and asks torch for
        the device, neither needed to compile."""

        def __init__(self) -> None:
            self.capability = capability
            self._target = GPUTarget("cuda", capability[0] * 10 + capability[1], 32)

        def get_current_target(self):
            return self._target

        def get_current_device(self) -> int:
            return 0

        def get_current_stream(self, device: int | None = None) -> int:
            return 0

        def get_device_capability(self, device: int | None = None) -> tuple[int, int]:
            return self.capability

    return TargetOnlyDriver()


# Triton's signature vocabulary for ahead-of-time compiles.
CONSTEXPR = "constexpr"
INT32 = "i32"
FLOAT32 = "fp32"
INT32_POINTER = "*i32"
_ELEMENTS = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}


def pointer_type(dtype: torch.dtype) -> str:
    return f"*{_ELEMENTS[dtype]}"


def descriptor_type(dtype: torch.dtype, block_shape: tuple[int, int]) -> str:
    """The signature type of a tensor-descriptor argument loading `block_shape` tiles."""
    return f"tensordesc<{_ELEMENTS[dtype]}[{block_shape[0]}, {block_shape[1]}]>"


def argument_names(kernel: object) -> list[str]:
    """The parameter names of a @triton.jit function, compiled or interpreted."""
    return list(inspect.signature(kernel.fn).parameters)


class AheadOfTime(NamedTuple):
    ptx: str
    shared_bytes: int


def compile_ahead(kernel: triton.runtime.JITFunction, signature: dict[str, str],
                  constants: dict[str, object], aligned: Iterable[str], capability: int,
                  num_warps: int, num_stages: int) -> AheadOfTime:
    """Compile `kernel` for CUDA compute capability `capability` (90 = sm_90) without that
    GPU: `signature` maps every argument's name to its type (above), `constants` gives the
    compile-time ones' values, `aligned` names the arguments known to be multiples of 16
    (pointers: 16-byte aligned)."""
    if is_interpreted(kernel):
        raise RuntimeError("compiling ahead needs the compiled kernel: unset TRITON_INTERPRET")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = kernel.arg_names
    source = ASTSource(fn=kernel, signature=signature,
                       constexprs={(names.index(k),): v for k, v in constants.items()},
                       attrs={(names.index(n),): [["tt.divisibility", 16]] for n in aligned})
    compiled = triton.compile(source, target=GPUTarget("cuda", capability, 32),
                              options={"num_warps": num_warps, "num_stages": num_stages})
    return AheadOfTime(compiled.asm.get("ptx", ""), int(compiled.metadata.shared))


def compiler_errors() -> tuple[type[Exception], ...]:
    """The exceptions that say a config cannot be built for this GPU (a compile error, or
    more shared memory or registers than it has): a sweep records them as the config's
    result."""
    from triton.compiler.errors import CompilationError
    from triton.runtime.errors import OutOfResources

    return CompilationError, OutOfResources


# --- the search space's measured rules -------------------------------------------------

_rules_noted = False


def note_rules_version(arch_name: str, version: Version = TRITON_VERSION) -> bool:
    """Log once per process, where `arch_name`'s configs are held to the search space's
    miscompile rules and they were measured on another Triton release than `version`,
    that the rules may not match this release's compiler (the rules stay as they are).
    True when it logged."""
    global _rules_noted
    if _rules_noted:
        return False
    from vitune.kernels.vision_attn.space import RULES_MEASURED_ON_TRITON, WGMMA_ARCHS

    if arch_name not in WGMMA_ARCHS or version[:2] == RULES_MEASURED_ON_TRITON:
        return False
    _rules_noted = True
    log.warning("the search space's miscompile rules for %s's wgmma path were measured "
                "with Triton %s (vitune.kernels.vision_attn.space); Triton %s is installed: "
                "they apply unchanged, though this compiler may miscompile other configs "
                "(the tuner checks each config's results before timing it)",
                arch_name, version_text(RULES_MEASURED_ON_TRITON), version_text(version))
    return True
