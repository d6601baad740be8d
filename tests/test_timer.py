"""The GPU timer times the kernels, not the host's launch work."""

import time

import pytest

from vitune.bench.timer import HOST_MARGIN, sleep_to_stay_ahead_ms


def test_no_sleep_where_the_gpu_already_outlasts_the_host():
    assert sleep_to_stay_ahead_ms(host_ms=0.08, gpu_ms=0.2) == 0.0


def test_sleep_makes_the_gpu_outlast_the_host_by_the_margin():
    host_ms, gpu_ms = 0.3, 0.05
    sleep = sleep_to_stay_ahead_ms(host_ms, gpu_ms)
    assert sleep > 0
    assert gpu_ms + sleep == pytest.approx(HOST_MARGIN * host_ms)


@pytest.mark.gpu
def test_host_work_before_a_short_kernel_is_not_timed():
    """A call that spends 0.3 ms on the host before a few-microsecond kernel: do_bench-style
    events would time the host's wait; ours report the kernel."""
    import torch

    from vitune.bench.timer import time_gpu

    x = torch.randn(1 << 16, device="cuda")

    def call():
        until = time.perf_counter() + 3e-4
        while time.perf_counter() < until:
            pass
        x.mul_(1.0001)

    kernel_alone = time_gpu(lambda: x.mul_(1.0001), rep_ms=20).median_ms
    with_host_work = time_gpu(call, rep_ms=20).median_ms
    assert kernel_alone < 0.05
    assert with_host_work < 0.1, (kernel_alone, with_host_work)
