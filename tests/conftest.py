"""Test lanes: the CPU lane runs the Triton kernels through TRITON_INTERPRET=1 (set here,
before anything imports triton); the GPU lane (`-m gpu`) needs CUDA and is skipped without."""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def own_user_config_dir(tmp_path_factory, monkeypatch):
    """Every test gets an empty per-user configs folder (vitune tune's default output, read
    by the runtime): none reads or writes the real one."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg")))


def make_packed(lengths, heads, head_dim, dtype, device="cpu", seed=0):
    """q, k, v as strided views of one fused [T, 3, H, D] tensor, and cu_seqlens."""
    gen = torch.Generator().manual_seed(seed)
    total = sum(lengths)
    qkv = torch.randn(total, 3, heads, head_dim, generator=gen).to(device=device, dtype=dtype)
    bounds = [0]
    for n in lengths:
        bounds.append(bounds[-1] + n)
    cu = torch.tensor(bounds, dtype=torch.int32, device=device)
    return qkv[:, 0], qkv[:, 1], qkv[:, 2], cu


def random_lengths(n, max_len, seed, p_empty=0.2):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (n,), generator=gen)
    empty = torch.rand(n, generator=gen) < p_empty
    return [0 if e else int(n_) for n_, e in zip(lengths, empty, strict=True)]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """After a CUDA fault (illegal address) the process's CUDA context is dead and every later
    test in it would fail too: under pytest-xdist, end this worker once the failure is
    reported so a fresh one takes the remaining tests, and each fault names its own test."""
    outcome = yield
    report = outcome.get_result()
    if (report.when == "call" and report.failed and call.excinfo is not None
            and "AcceleratorError" in call.excinfo.typename
            and os.environ.get("PYTEST_XDIST_WORKER")):
        item.config.hook.pytest_runtest_logreport(report=report)
        os._exit(1)
