"""The per-signature plan cache of vision_attention: repeated calls skip the checks and the
decision, and nothing that the checks reject gets through it."""

import pytest
import torch
from conftest import make_packed

from vitune import reference_attention, vision_attention
from vitune.kernels.vision_attn.reference import TOLERANCE, relative_error
from vitune.runtime import api

LENGTHS = [5, 0, 11]


@pytest.fixture(autouse=True)
def _fresh_plans():
    api.clear_decision_cache()
    yield
    api.clear_decision_cache()


def test_repeated_call_reuses_its_plan():
    q, k, v, cu = make_packed(LENGTHS, 2, 32, torch.float16)
    first = vision_attention(q, k, v, cu, 11)
    assert len(api._plans) == 1
    second = vision_attention(q, k, v, cu, 11)
    assert len(api._plans) == 1
    ref = reference_attention(q, k, v, cu)
    assert relative_error(first, ref) < TOLERANCE[torch.float16]
    assert torch.equal(first, second)


def test_checks_still_run_after_a_cached_call():
    q, k, v, cu = make_packed(LENGTHS, 2, 32, torch.float16)
    vision_attention(q, k, v, cu, 11)
    with pytest.raises(TypeError, match="k has dtype"):
        vision_attention(q, k.float(), v, cu, 11)
    with pytest.raises(ValueError, match="out has shape"):
        vision_attention(q, k, v, cu, 11, out=torch.empty(3, 2, 32, dtype=torch.float16))
    with pytest.raises(TypeError, match="max_seqlen must be an int"):
        vision_attention(q, k, v, cu, True)  # equal to 1 as a dict key, still refused
    with pytest.raises(ValueError, match="scale must be finite"):
        vision_attention(q, k, v, cu, 11, scale=float("nan"))
    with pytest.raises(TypeError, match="cu_seqlens has dtype"):
        vision_attention(q, k, v, cu.long(), 11)
    with pytest.raises(TypeError, match="q must be a torch.Tensor"):
        vision_attention(q.numpy(), k, v, cu, 11)


def test_validate_is_never_skipped_by_the_cache(monkeypatch):
    q, k, v, cu = make_packed(LENGTHS, 2, 32, torch.float16)
    vision_attention(q, k, v, cu, 11)
    backwards = torch.tensor([0, 9, 5, 16], dtype=torch.int32)
    with pytest.raises(ValueError, match="non-decreasing"):
        vision_attention(q, k, v, backwards, 11, validate=True)
    monkeypatch.setenv("VITUNE_VALIDATE", "1")
    with pytest.raises(ValueError, match="non-decreasing"):
        vision_attention(q, k, v, backwards, 11)


def test_grad_mode_is_checked_on_every_call():
    q, k, v, cu = make_packed(LENGTHS, 1, 32, torch.float32)
    q.requires_grad_(True)
    with torch.no_grad():
        vision_attention(q, k, v, cu, 11)
    with pytest.raises(NotImplementedError, match="forward-only"):
        vision_attention(q, k, v, cu, 11)


def test_loading_configs_forgets_plans(tmp_path):
    q, k, v, cu = make_packed(LENGTHS, 2, 32, torch.float16)
    vision_attention(q, k, v, cu, 11)
    assert api._plans
    from vitune import load_configs

    load_configs(tmp_path)
    assert not api._plans


def test_overhead_bench_reports_every_way():
    from vitune.bench.overhead import host_overhead

    rows = host_overhead(torch.device("cpu"), calls=1, repeats=1, tokens=8, heads=1,
                         head_dim=32, dtype=torch.float16)
    assert [r["way"] for r in rows][0] == "kernel launch (direct)"
    assert rows[0]["overhead_us"] == 0.0
    assert len(rows) == 5 and all(r["us_per_call"] > 0 for r in rows)
