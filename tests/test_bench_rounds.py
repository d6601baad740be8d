"""`vitune bench --rounds`: every backend of a workload timed once per round, in turn, each
round starting at another backend, and each row keeping the median of its rounds."""

import pytest
import torch

from vitune.bench.kernels import iter_bench
from vitune.bench.timer import Timing
from vitune.bench.workloads import Workload
from vitune.kernels.vision_attn.launch import kernel_is_interpreted

pytestmark = pytest.mark.skipif(torch.cuda.is_available() or not kernel_is_interpreted(),
                                reason="CPU lane (a fake timer around the interpreter)")

TINY = Workload("tiny", (12, 5), heads=1, head_dim=32, dtype="float32")


class FakeTimer:
    """Each call's median is the next number of `medians`; the runners in call order."""

    def __init__(self, medians):
        self.medians, self.calls = list(medians), []

    def __call__(self, fn):
        self.calls.append(fn)
        m = self.medians.pop(0)
        return Timing(median_ms=m, p20_ms=m - 0.5, p80_ms=m + 0.5)


def test_rounds_interleave_the_backends_and_keep_each_median():
    # Round 0 (the check's timing) times vitune then sdpa-masked; round 1 starts at
    # sdpa-masked; round 2 at vitune again.
    timer = FakeTimer([10.0, 20.0, 21.0, 11.0, 13.0, 26.0])
    rows = list(iter_bench([TINY], ["vitune-tuned", "sdpa-masked"], torch.device("cpu"),
                           rounds=3, timer=timer))
    by = {r["backend"]: r for r in rows}
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert by["vitune-tuned"]["round_medians_ms"] == [10.0, 11.0, 13.0]
    assert by["sdpa-masked"]["round_medians_ms"] == [20.0, 21.0, 26.0]
    assert by["vitune-tuned"]["median_ms"] == 11.0 and by["sdpa-masked"]["median_ms"] == 21.0
    assert by["sdpa-masked"]["p20_ms"] == 20.5 and by["vitune-tuned"]["rounds"] == 3
    vitune, masked = timer.calls[:2]
    assert timer.calls[2:] == [masked, vitune, vitune, masked]


def test_one_round_is_the_checked_timing_alone():
    timer = FakeTimer([10.0, 20.0])
    rows = list(iter_bench([TINY], ["vitune-tuned", "sdpa-masked", "sdpa-flash"],
                           torch.device("cpu"), timer=timer))
    assert [r["status"] for r in rows] == ["ok", "ok", "n/a"]  # (flash: equal lengths only)
    assert rows[0]["median_ms"] == 10.0 and "rounds" not in rows[0]
    assert len(timer.calls) == 2
