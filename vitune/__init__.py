"""vitune: Triton vision-encoder attention kernels, autotuned per GPU.

The public names load on first use (PEP 562), so `import vitune.cli` and the tuner's own
modules start without torch: `vitune tune` starts its worker processes' fork server
before it imports torch itself, and the two imports overlap."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = ["KernelConfig", "SEARCH_SPACE", "load_configs", "reference_attention",
           "vision_attention"]
__version__ = "0.1.0"

_HOMES = {"reference_attention": "vitune.kernels.vision_attn.reference",
          "SEARCH_SPACE": "vitune.kernels.vision_attn.space",
          "KernelConfig": "vitune.kernels.vision_attn.space",
          "vision_attention": "vitune.runtime.api",
          "load_configs": "vitune.runtime.selector"}

if TYPE_CHECKING:
    from vitune.kernels.vision_attn.reference import reference_attention
    from vitune.kernels.vision_attn.space import SEARCH_SPACE, KernelConfig
    from vitune.runtime.api import vision_attention
    from vitune.runtime.selector import load_configs


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'vitune' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value  # (once: later lookups find it directly)
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
