"""Debug helper: run one named kernel case on the GPU and print its relative error."""
import sys

import torch

sys.path.insert(0, "tests")
from conftest import make_packed  # noqa: E402

from vitune import reference_attention, vision_attention  # noqa: E402
from vitune.kernels.vision_attn.reference import relative_error  # noqa: E402
from vitune.tuner.workloads import qwen_window_seqlens  # noqa: E402

W10 = list(qwen_window_seqlens(1024, 1024))
W19 = list(qwen_window_seqlens(1080, 1920))
F = [0, 1000, 517, 1]
C = dict(block_m=64, block_n=64, num_warps=4, num_stages=2, heads_fastest=True)
S32 = dict(block_m=32, block_n=32, num_warps=2, num_stages=1)
CASES = {
    "d72pad": (F, 4, 72, {**C, "head_split": False}, 0),
    "d72split_stride80": (F, 4, 72, C, 80),
    "d72split_m32": (F, 4, 72, {**S32, "num_stages": 2}, 0),
    "d72split_ctrl": (F, 4, 72, C, 0),
    "d88pad": (F, 4, 88, {**C, "head_split": False}, 0),
    "d88split_stride96": (F, 4, 88, C, 96),
    "d80s1m64": (F, 4, 80, {**C, "num_stages": 1}, 0),
    "w19h16m32s1": (W19, 16, 80, S32, 0),
    "w19h2m32s1": (W19, 2, 80, S32, 0),
    "w10h16m32s1": (W10, 16, 80, S32, 0),
    "w19h16default": (W19, 16, 80, None, 0),
}
lens, heads, d, cfg, storage = CASES[sys.argv[1]]
if storage:  # head rows stored wider than head_dim: stride_h = storage
    q, k, v, cu = make_packed(lens, heads, storage, torch.bfloat16, device="cuda")
    q, k, v = q[..., :d], k[..., :d], v[..., :d]
else:
    q, k, v, cu = make_packed(lens, heads, d, torch.bfloat16, device="cuda")
out = torch.full(q.shape, float("nan"), dtype=q.dtype, device="cuda")
vision_attention(q, k, v, cu, out=out, config=cfg)
torch.cuda.synchronize()
ref = reference_attention(q, k, v, cu, compute_dtype=torch.float32)
print(sys.argv[1], "err", relative_error(out, ref), "strides", q.stride())
