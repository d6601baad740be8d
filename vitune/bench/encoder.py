"""The encoder benchmark on real model code: transformers' own vision towers (Qwen2.5-VL,
Qwen3-VL, Qwen2-VL), built from the published models' vision configs with random weights
(nothing downloaded), timed per attention path on one batch of images.

Paths, each on the same model and inputs (`set_attn_implementation` between them):
- `transformers-sdpa`: transformers' default (one SDPA call per segment or window);
- `varlen+hf-rotary`: one packed torch `varlen_attn` call per layer, transformers' rotary;
- `vitune+hf-rotary`: one packed vitune call per layer, transformers' rotary;
- `vitune`: what `register_hf_attention()` gives: one packed call, rotary fused;
- `skip-attention`: rotary and attention skipped (v passed on): the ceiling no attention
  path can beat. Each path's attention + rotary time is its excess over it.
The tower is given `max_seqlen` (and `max_window_seqlen`) computed once per batch on the
host, as a serving engine does, so no path synchronises per layer for them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from vitune.bench.workloads import FOUR_IMAGES
from vitune.runtime.backends import BackendUnavailable
from vitune.runtime.hf_towers import TowerMode
from vitune.runtime.integrations import register_hf_attention, register_tower_mode


@dataclass(frozen=True)
class TowerSpec:
    """A model family's vision tower: where transformers keeps it and the published
    model's vision config (the keys that set its shapes)."""

    module: str  # under transformers.models
    model_class: str
    config_class: str
    config: dict = field(default_factory=dict)
    windows: bool = False  # Qwen2.5-VL: window layers besides the full ones

    def pixel_width(self, config) -> int:
        return config.in_channels * config.temporal_patch_size * config.patch_size ** 2


TOWERS = {
    # Qwen2.5-VL-7B-Instruct's vision_config: 32 blocks, 16 heads of 80, windows of 112 px.
    "qwen2.5-vl": TowerSpec("qwen2_5_vl.modeling_qwen2_5_vl",
                            "Qwen2_5_VisionTransformerPretrainedModel", "Qwen2_5_VLVisionConfig",
                            dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                                 out_hidden_size=3584, fullatt_block_indexes=[7, 15, 23, 31],
                                 window_size=112, patch_size=14, spatial_merge_size=2,
                                 temporal_patch_size=2, hidden_act="silu"), windows=True),
    # Qwen3-VL-8B-Instruct's vision_config: 27 blocks, 16 heads of 72, full attention.
    "qwen3-vl": TowerSpec("qwen3_vl.modeling_qwen3_vl", "Qwen3VLVisionModel",
                          "Qwen3VLVisionConfig",
                          dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16,
                               out_hidden_size=4096, patch_size=16, spatial_merge_size=2,
                               temporal_patch_size=2, num_position_embeddings=2304,
                               deepstack_visual_indexes=[8, 16, 24],
                               hidden_act="gelu_pytorch_tanh")),
    # Qwen2-VL-7B-Instruct's vision_config: 32 blocks, 16 heads of 80, full attention.
    "qwen2-vl": TowerSpec("qwen2_vl.modeling_qwen2_vl", "Qwen2VisionTransformerPretrainedModel",
                          "Qwen2VLVisionConfig",
                          dict(depth=32, embed_dim=1280, hidden_size=3584, num_heads=16,
                               mlp_ratio=4, patch_size=14, spatial_merge_size=2,
                               temporal_patch_size=2, hidden_act="quick_gelu")),
}

SKIP = "skip-attention"
PATHS = ("transformers-sdpa", "varlen+hf-rotary", "vitune+hf-rotary", "vitune")
# 18,288 patches in Qwen2.5-VL (10,764 + 5,476 + 2 x 1,024), as the kernels' rotary preset.
DEFAULT_IMAGES = list(FOUR_IMAGES)
_MODES = {"varlen+hf-rotary": TowerMode(backend="varlen", fused_rotary=False),
          "vitune+hf-rotary": TowerMode(fused_rotary=False),
          SKIP: TowerMode(attend=False)}


def attn_names() -> dict[str, str]:
    """Each path's attn_implementation value (vitune's bench modes installed on the way)."""
    names = {"transformers-sdpa": "sdpa", "vitune": register_hf_attention()}
    for path, mode in _MODES.items():
        names[path] = register_tower_mode(f"vitune_bench_{path}", mode)
    return names


def build_tower(kind: str, device: torch.device, dtype: torch.dtype,
                overrides: dict | None = None, seed: int = 0) -> torch.nn.Module:
    """transformers' tower of `kind` from its config (with `overrides`), random weights."""
    import importlib

    import transformers

    spec = TOWERS[kind]
    try:
        module = importlib.import_module(f"transformers.models.{spec.module}")
        config_cls = getattr(transformers, spec.config_class)
        model_cls = getattr(module, spec.model_class)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"transformers {transformers.__version__} has no {kind} vision "
                         f"tower ({spec.model_class}): {exc}") from None
    config = config_cls(**{**spec.config, **(overrides or {})})
    torch.manual_seed(seed)
    with torch.device(device):
        model = model_cls._from_config(config, attn_implementation="sdpa", dtype=dtype)
    return model.eval()


def grid_for(height: int, width: int, config) -> tuple[int, int, int]:
    """(t, h, w) patches of one image, its sides rounded to the nearest multiple of
    patch * merge as the Qwen-VL processors resize them (no pixel-count clamps)."""
    factor = config.patch_size * config.spatial_merge_size
    rows, cols = (max(factor, round(x / factor) * factor) // config.patch_size
                  for x in (height, width))
    return (1, rows, cols)


def tower_inputs(kind: str, model: torch.nn.Module, sizes: list[tuple[int, int]],
                 device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, dict]:
    """Pixels [patches, channels * t * p * p] and the forward's keyword arguments: the grid
    and the host-known longest segment (and window) of the batch."""
    config = model.config
    grid = torch.tensor([grid_for(h, w, config) for h, w in sizes], dtype=torch.int64)
    patches = int(grid.prod(-1).sum())
    pixels = torch.randn(patches, TOWERS[kind].pixel_width(config), device=device,
                         dtype=dtype)
    kwargs = {"grid_thw": grid.to(device), "max_seqlen": int(grid[:, 1:].prod(-1).max())}
    if TOWERS[kind].windows:
        side = config.window_size // config.patch_size  # patches per window side
        kwargs["max_window_seqlen"] = int(min(side, grid[:, 1].max()) *
                                          min(side, grid[:, 2].max()))
    return pixels, kwargs


@torch.inference_mode()
def bench_tower(kind: str, sizes: list[tuple[int, int]], paths: list[str],
                device: torch.device, dtype: torch.dtype = torch.bfloat16, reps: int = 10,
                overrides: dict | None = None) -> list[dict]:
    """ms per forward and tokens/s of transformers' `kind` tower per attention path, each
    output compared with the first path's, and the skip-attention ceiling last."""
    model = build_tower(kind, device, dtype, overrides)
    pixels, kwargs = tower_inputs(kind, model, sizes, device, dtype)
    names = attn_names()
    tokens = pixels.shape[0]
    common = {"tower": kind, "tokens": tokens, "images": [list(s) for s in sizes],
              "layers": len(model.blocks), "dtype": str(dtype).removeprefix("torch.")}
    rows, reference = [], None
    for path in [*paths, SKIP]:
        model.set_attn_implementation(names[path])

        def forward():
            return model(pixels, **kwargs).last_hidden_state
        try:
            out = forward().float()
        except BackendUnavailable as exc:  # reported, not timed
            rows.append({**common, "path": path, "status": "n/a", "reason": str(exc)})
            continue
        rel = None
        if path != SKIP:
            if reference is None:
                reference = out
            else:
                rel = float((out - reference).norm() / reference.norm())
        median = statistics.median(_time(forward, device, reps))
        rows.append({**common, "path": path, "status": "bound" if path == SKIP else "ok",
                     "median_ms": median, "tokens_per_s": tokens / (median * 1e-3),
                     "rel_diff_vs_first": rel})
    ceiling = rows[-1]["median_ms"]
    for row in rows:
        if row["status"] == "ok":
            row["attention_rotary_ms"] = row["median_ms"] - ceiling
            row["attention_rotary_share"] = row["attention_rotary_ms"] / row["median_ms"]
    return rows


def _time(fn: Callable[[], object], device: torch.device, reps: int) -> list[float]:
    fn()  # warm-up (compiles, allocator)
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return times
