"""One check-then-time for the tuner's trials, the sweep and the kernel benchmark
(vitune.bench.measure): an output within its dtype's tolerance is timed, any other is not."""

import math

import pytest
import torch

from vitune.bench.backends import Prepared
from vitune.bench.measure import check_then_time, within_tolerance
from vitune.bench.timer import Timing, time_wall
from vitune.kernels.vision_attn.reference import TOLERANCE


def recording_timer(timed: list):
    def timer(fn):
        timed.append(fn)
        return Timing(median_ms=1.0, p20_ms=0.9, p80_ms=1.1)
    return timer


def test_an_output_within_tolerance_is_timed():
    ref = torch.randn(8, 2, 16)
    timed = []
    m = check_then_time(Prepared(lambda: ref * (1 + 1e-6)), ref, torch.float32,
                        recording_timer(timed))
    assert m.passed and m.timing.median_ms == 1.0 and m.rel_error < 1e-5
    assert m.tolerance == TOLERANCE[torch.float32] and len(timed) == 1


@pytest.mark.parametrize("wrong", [lambda ref: 2 * ref, lambda ref: torch.full_like(ref, math.nan)],
                         ids=["off", "nan"])
def test_an_output_past_tolerance_is_reported_and_never_timed(wrong):
    ref = torch.randn(8, 2, 16)
    timed = []
    m = check_then_time(Prepared(lambda: wrong(ref)), ref, torch.float16, recording_timer(timed))
    assert not m.passed and m.timing is None and not timed
    assert not m.rel_error <= TOLERANCE[torch.float16]


def test_the_tolerance_itself_passes_and_anything_above_fails():
    """The one test every caller applies (the sweep once used `<`, the others `<=`)."""
    for dtype, tolerance in TOLERANCE.items():
        assert within_tolerance(tolerance, dtype)
        assert not within_tolerance(math.nextafter(tolerance, math.inf), dtype)
        assert not within_tolerance(math.nan, dtype)


def test_the_interpreters_wall_clock_timer_takes_the_median_of_its_calls():
    calls = []
    t = time_wall(lambda: calls.append(1), calls=3)
    assert len(calls) == 3 and 0 <= t.p20_ms == t.median_ms == t.p80_ms
