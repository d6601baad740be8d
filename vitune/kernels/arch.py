"""Per-architecture resource budgets used by the search spaces' validity rules.

The numbers are the hardware limits of one thread block (CUDA programming guide,
"compute capabilities" table) with a little shared memory held back for the
compiler's own scratch (barriers, reductions), so a config we accept compiles.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArchSpec:
    """What a kernel config may use on one GPU architecture family."""

    name: str  # "ampere", "hopper", "blackwell"
    min_capability: tuple[int, int]
    smem_per_block: int  # bytes of shared memory one program may use
    max_regs_per_thread: int
    max_warps: int
    has_tma: bool = False  # tensor descriptors (TMA): sm_90 and sm_100

    @property
    def sm(self) -> str:
        major, minor = self.min_capability
        return f"sm_{major}{minor}"


AMPERE = ArchSpec("ampere", (8, 0), smem_per_block=163 * 1024 - 2048, max_regs_per_thread=255,
                  max_warps=16)
HOPPER = ArchSpec("hopper", (9, 0), smem_per_block=227 * 1024 - 2048, max_regs_per_thread=255,
                  max_warps=16, has_tma=True)
BLACKWELL = ArchSpec("blackwell", (10, 0), smem_per_block=227 * 1024 - 2048,
                     max_regs_per_thread=255, max_warps=16, has_tma=True)
# Consumer parts (sm_86, sm_89, sm_120) give a block only 99 KB of shared memory.
AMPERE_CONSUMER = ArchSpec("ampere_consumer", (8, 6), smem_per_block=99 * 1024 - 2048,
                           max_regs_per_thread=255, max_warps=16)
BLACKWELL_CONSUMER = ArchSpec("blackwell_consumer", (12, 0), smem_per_block=99 * 1024 - 2048,
                              max_regs_per_thread=255, max_warps=16)
# The Triton interpreter (TRITON_INTERPRET=1) has no hardware limits; budgets as Hopper's
# (descriptors included) keep CPU tests on the same valid space as the GPUs we target.
INTERPRETER = ArchSpec("interpreter", (0, 0), smem_per_block=HOPPER.smem_per_block,
                       max_regs_per_thread=255, max_warps=16, has_tma=True)

ARCHS = {
    a.name: a
    for a in (AMPERE, AMPERE_CONSUMER, HOPPER, BLACKWELL, BLACKWELL_CONSUMER, INTERPRETER)
}


def arch_for_capability(capability: tuple[int, int]) -> ArchSpec:
    """Architecture family for a CUDA compute capability; older than sm_80 is unsupported."""
    major, minor = capability
    if major == 8:
        return AMPERE if minor == 0 else AMPERE_CONSUMER
    if major == 9:
        return HOPPER
    if major in (10, 11):
        return BLACKWELL
    if major >= 12:  # consumer Blackwell and anything newer: the smallest budget is safe
        return BLACKWELL_CONSUMER
    raise ValueError(
        f"compute capability {capability[0]}.{capability[1]} is not supported: "
        "vitune's kernels need sm_80 (Ampere) or newer"
    )
