"""`vitune tune` with two search processes on one GPU: the run's board (each process on
buckets of its own, then sharing the last), the member process and its workers, on a real
GPU where only one is lent. Both processes time on the same GPU at once, so the rates and
the wall time say nothing of a 2-GPU run: this checks that the run works, not its speed.

    python scripts/two_searches_one_gpu.py -v tune --gpu auto --preset qwen2.5-vl \\
        --workers 2 --trials 40 --out /tmp/vt/two --storage sqlite:////tmp/two.db

`vitune tune --workers 2` on a one-GPU host exits naming the GPUs it lacks; here each
search process is given the same visible GPU instead (CUDA refuses a device listed twice
in CUDA_VISIBLE_DEVICES, so that cannot be done from the shell).
"""

from __future__ import annotations

import sys

from vitune import cli
from vitune.tuner import tune


def each_gpu_twice(visible=tune.visible_gpus) -> list[str]:
    return [gpu for gpu in visible() for _ in range(2)]


if __name__ == "__main__":
    tune.visible_gpus = each_gpu_twice
    sys.exit(cli.main(sys.argv[1:]))
