"""vitune: Triton vision-encoder attention kernels, autotuned per GPU."""

from vitune.kernels.vision_attn.reference import reference_attention
from vitune.kernels.vision_attn.space import SEARCH_SPACE, KernelConfig
from vitune.runtime.api import vision_attention
from vitune.runtime.selector import load_configs

__all__ = ["KernelConfig", "SEARCH_SPACE", "load_configs", "reference_attention",
           "vision_attention"]
__version__ = "0.1.0"
