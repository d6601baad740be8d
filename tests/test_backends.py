"""backend=: explicit backends run or raise clearly; auto follows the tuned file."""

import pytest
import torch
import yaml
from conftest import make_packed

import vitune.runtime.api as api
from vitune import reference_attention, vision_attention
from vitune.kernels.vision_attn.launch import kernel_is_interpreted
from vitune.kernels.vision_attn.reference import TOLERANCE, relative_error
from vitune.runtime import selector
from vitune.runtime.backends import BackendUnavailable

pytestmark = pytest.mark.skipif(torch.cuda.is_available() or not kernel_is_interpreted(),
                                reason="CPU lane")
TOL = TOLERANCE[torch.float32]


@pytest.mark.parametrize("lengths", [[12, 12, 12], [12, 0, 5, 19]], ids=["equal", "unequal"])
def test_explicit_sdpa_on_packed_input(lengths):
    q, k, v, cu = make_packed(lengths, heads=2, head_dim=32, dtype=torch.float32)
    out = vision_attention(q, k, v, cu, max(lengths), backend="sdpa", scale=0.3)
    assert relative_error(out, reference_attention(q, k, v, cu, scale=0.3)) < TOL


def test_explicit_sdpa_batched_into_out():
    q = torch.randn(2, 9, 2, 32)
    out = torch.full_like(q, float("nan"))
    assert vision_attention(q, q, q, out=out, backend="sdpa") is out
    assert relative_error(out, reference_attention(q, q, q)) < TOL


def test_pinned_sdpa_kernel_refuses_unequal_segments():
    q, k, v, cu = make_packed([12, 5], heads=1, head_dim=32, dtype=torch.float32)
    with pytest.raises(BackendUnavailable, match="equal segment lengths only"):
        vision_attention(q, k, v, cu, 12, backend="sdpa_flash")


def test_unavailable_backends_raise_never_fall_back():
    q, k, v, cu = make_packed([12, 5], heads=1, head_dim=32, dtype=torch.float32)
    with pytest.raises(BackendUnavailable, match="'varlen' runs on CUDA tensors only"):
        vision_attention(q, k, v, cu, 12, backend="varlen")
    with pytest.raises(BackendUnavailable, match="'varlen' needs max_seqlen"):
        vision_attention(q, k, v, cu, backend="varlen")
    with pytest.raises(BackendUnavailable, match="'flash_attn'"):
        vision_attention(q, k, v, cu, 12, backend="flash_attn")
    with pytest.raises(ValueError, match="backend='cudnn' is not one of"):
        vision_attention(q, k, v, cu, backend="cudnn")
    with pytest.raises(ValueError, match="config applies to vitune's Triton kernel"):
        vision_attention(q, k, v, cu, backend="sdpa", config={"block_m": 32})


def _auto_with_tuned_bucket(tmp_path, monkeypatch, runner: str, **bucket) -> list:
    """The interpreter's tuned file holds one bucket (d32 fp32 windows of 12); every
    launch is recorded in the returned list: the runner's name, or "triton"."""
    doc = {"schema_version": 1, "gpu": "interpreter", "interpreter": True,
           "buckets": [{"head_dim": 32, "dtype": "float32", "regime": "window", "seqlen": 12,
                        **bucket}]}
    (tmp_path / "interpreter.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setattr(selector, "_user_paths", [])
    selector.load_configs(tmp_path)
    calls = []
    monkeypatch.setitem(api.RUNNERS, runner, lambda *a: calls.append(runner) or a[0])
    monkeypatch.setattr(api, "run_launch",
                        lambda launch, q, k, v, out, cu, **kw: calls.append("triton") or out)
    return calls


def test_auto_runs_the_measured_winner_where_it_applies(tmp_path, monkeypatch):
    calls = _auto_with_tuned_bucket(tmp_path, monkeypatch, "sdpa_flash", backend="sdpa_flash")
    try:
        q, k, v, cu = make_packed([12, 12], heads=1, head_dim=32, dtype=torch.float32)
        vision_attention(q, k, v, cu, 12)  # equal lengths: the measured winner
        q, k, v, cu = make_packed([12, 7], heads=1, head_dim=32, dtype=torch.float32)
        vision_attention(q, k, v, cu, 12)  # unequal: SDPA cannot take it, vitune's kernel
        assert calls == ["sdpa_flash", "triton"]
    finally:
        selector.clear_cache()


def test_auto_with_out_runs_what_was_measured_fastest_into_out(tmp_path, monkeypatch):
    """A peer's result has to be copied into a caller's out=; vitune's kernel writes it.
    The tuner measures both ways: a call with out= takes `backend_with_out`."""
    calls = _auto_with_tuned_bucket(tmp_path, monkeypatch, "sdpa", backend="sdpa",
                                    backend_with_out="triton")
    try:
        q, k, v, cu = make_packed([12, 12], heads=1, head_dim=32, dtype=torch.float32)
        vision_attention(q, k, v, cu, 12)
        vision_attention(q, k, v, cu, 12, out=torch.empty_like(q))
        vision_attention(q, k, v, cu, 12)  # (each way keeps its own cached decision)
        assert calls == ["sdpa", "triton", "sdpa"]
    finally:
        selector.clear_cache()


def test_one_vocabulary_of_backend_names():
    """Every list of backend names is vitune.runtime.backend_names': the call's, the
    configs files', the measured backends' (bench rows, a bucket's peers, the CLI's)."""
    from vitune import cli
    from vitune.bench.backends import LIBRARY_PEERS, PEERS
    from vitune.runtime import backend_names as names
    from vitune.runtime import schema
    from vitune.runtime.backends import BACKENDS, RUNNERS

    assert BACKENDS == names.CALL_BACKENDS
    assert set(RUNNERS) == set(names.CALL_BACKENDS) - {"auto", "triton"}
    assert schema.BACKENDS == names.TUNED_BACKENDS
    assert tuple(PEERS) == names.MEASURED_BACKENDS == cli.BACKENDS
    assert set(names.PEER_BACKENDS) <= set(PEERS)
    assert set(names.PEER_BACKENDS.values()) <= set(RUNNERS)
    assert LIBRARY_PEERS == tuple(names.PEER_BACKENDS)
    assert names.MEASURED_BACKENDS[:len(names.VITUNE_PEERS)] == names.VITUNE_PEERS


def test_a_measured_peer_names_the_backend_its_bucket_runs():
    """A bucket whose fastest measurement was a library peer records the call backend that
    runs it; a peer no call can run (SGLang's constants) is recorded, never chosen."""
    from vitune.bench.presets import bucket_of
    from vitune.bench.workloads import Workload
    from vitune.kernels.vision_attn.space import KernelConfig
    from vitune.tuner.crown import BucketResult, bucket_entry

    w = Workload("w", (12, 12), heads=1, head_dim=32, dtype="float32")

    def entry(peers):
        return bucket_entry(BucketResult(bucket_of(w), w, KernelConfig(), 300.0, 250.0, peers,
                                         {}, "s"))
    assert entry({"sdpa-cudnn": 400.0, "varlen_attn": 350.0})["backend"] == "sdpa_cudnn"
    assert entry({"varlen_attn": 350.0, "flash_attn": 310.0})["backend"] == "varlen"
    fixed = entry({"sglang-style-fixed": 900.0, "sdpa-flash": 100.0})
    assert fixed["backend"] == "triton" and fixed["peers"]["sglang-style-fixed"] == 900.0


@pytest.mark.parametrize("lengths", [[12, 12, 12], [12, 0, 5, 19]], ids=["equal", "unequal"])
def test_the_measured_masked_sdpa_and_the_calls_sdpa_agree(lengths):
    """Both go through the runtime's adapters (vitune.runtime.backends): the benchmark's
    masked SDPA (mask built ahead, as engines did) and the call's SDPA give the same output."""
    from vitune.bench.backends import PEERS, check_backend
    from vitune.bench.workloads import Workload

    w = Workload("w", tuple(lengths), heads=2, head_dim=32, dtype="float32")
    q, k, v = w.make_qkv("cpu")
    cu = w.cu_seqlens("cpu")
    ref = reference_attention(q, k, v, cu)
    measured = PEERS["sdpa-masked"](w, q, k, v, cu)
    assert check_backend(measured, ref) < TOL
    called = vision_attention(q, k, v, cu, max(lengths), backend="sdpa")
    assert relative_error(called, measured.packed(measured.run())) < 1e-6


@pytest.mark.parametrize("given_out", [False, True], ids=["allocated", "out="])
def test_rotate_first_peer_attends_over_the_rotated_q_and_k(given_out):
    """`vitune-rotate-first`: vitune's rotation pass over q and k, then the call without
    rotary; the same attention as the rotary reference, and n/a without rotary."""
    from vitune.bench.backends import PEERS, check_backend
    from vitune.bench.workloads import Workload

    w = Workload("w", (12, 5, 16), heads=2, head_dim=32, dtype="float32")
    q, k, v = w.make_qkv("cpu")
    cu = w.cu_seqlens("cpu")
    trig = w.make_rotary("cpu")
    peer = PEERS["vitune-rotate-first"](w, q, k, v, cu, trig, given_out=given_out)
    assert check_backend(peer, reference_attention(q, k, v, cu, rotary=trig)) < TOL
    assert check_backend(peer, reference_attention(q, k, v, cu)) > 10 * TOL  # (rotated)
    assert PEERS["vitune-rotate-first"](w, q, k, v, cu, None, given_out=given_out) is None
