"""Profile a compile process's first real compile (after its warm-up), compile-only, as run
on the H100 (from the repository root, commit 4e435a6):

    VITUNE_COMPILE_FOR=9.0 [CUDA_VISIBLE_DEVICES=] TRITON_CACHE_DIR=$(mktemp -d) \\
        python3 prof_compile.py

prof-yes.log: the GPU hidden (as the tuner's compile processes); prof-no.log: not.
"""

import cProfile
import os
import pstats
import time

from vitune.kernels.vision_attn.space import KernelConfig
from vitune.tuner.presets import TUNE_PRESETS
from vitune.tuner.trial import TrialRequest, precompile, warm_up_compiler

started = time.process_time()
warm_up_compiler()
print("warm-up cpu", round(time.process_time() - started, 2),
      "CUDA_VISIBLE_DEVICES", repr(os.environ.get("CUDA_VISIBLE_DEVICES")))
workload = TUNE_PRESETS["qwen2.5-vl"][0]
configs = [KernelConfig(block_m=m, block_n=64, num_warps=w, num_stages=2, head_split=True,
                        heads_fastest=False, tma=True, windows=False)
           for m, w in ((64, 4), (128, 8))]
profile = cProfile.Profile()
for i, cfg in enumerate(configs):
    started = time.process_time()
    if i == 0:
        profile.enable()
    precompile(TrialRequest(workload, "triton", cfg.to_dict(), False))
    if i == 0:
        profile.disable()
    print("compile", i, "cpu", round(time.process_time() - started, 2))
stats = pstats.Stats(profile)
stats.sort_stats("cumulative").print_stats(30)
stats.sort_stats("tottime").print_stats(15)
