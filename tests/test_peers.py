"""The backends measured beside vitune, run as a caller makes the call: with the result
landing in a buffer given as out= (copied there by other backends) or allocated by the
call, each checked on output that starts as NaN."""

import pytest
import torch

from vitune.bench.backends import check_backend, prepare_peer
from vitune.bench.workloads import Workload
from vitune.kernels.vision_attn.reference import TOLERANCE, reference_attention

W = Workload("two segments", (12, 12), heads=1, head_dim=32, dtype="float32")


@pytest.mark.parametrize("given_out", [False, True])
@pytest.mark.parametrize("name", ["vitune-auto", "sdpa-masked"])
def test_each_way_of_calling_is_checked_and_lands_where_the_caller_looks(name, given_out):
    q, k, v = W.make_qkv("cpu")
    cu = W.cu_seqlens("cpu")
    ref = reference_attention(q, k, v, cu, compute_dtype=torch.float64)
    peer = prepare_peer(name, W, q, k, v, cu, given_out=given_out)
    assert check_backend(peer, ref) <= TOLERANCE[torch.float32]
    first, second = peer.run(), peer.run()
    if given_out:  # one buffer, written on every run
        assert peer.packed(first).data_ptr() == peer.packed(second).data_ptr()


@pytest.mark.gpu
def test_an_output_the_call_allocates_is_checked_on_nan_not_on_old_results():
    """A call that allocates its own output gets the NaN block the check frees before it,
    not the memory of an earlier correct result: one that writes nothing fails."""
    w = Workload("two segments", (256, 256), heads=2, head_dim=64, dtype="float16")
    q, k, v = w.make_qkv("cuda")
    cu = w.cu_seqlens("cuda")
    ref = reference_attention(q, k, v, cu, compute_dtype=torch.float32)
    peer = prepare_peer("vitune-auto", w, q, k, v, cu, given_out=False)
    assert check_backend(peer, ref) <= TOLERANCE[torch.float16]  # (its result freed)
    writes_nothing = type(peer)(lambda: torch.empty_like(q), poison=peer.poison)
    assert not check_backend(writes_nothing, ref) <= TOLERANCE[torch.float16]


def test_a_trial_times_a_peer_as_a_caller_with_out_gets_it():
    """What the crown asks a worker for each peer the runtime can run: checked and timed
    with its result copied into a given out=."""
    from vitune.tuner.trial import TrialRequest, run_trial

    for given_out in (False, True):
        result = run_trial(TrialRequest(W, "sdpa-masked", None, interpret=True,
                                        given_out=given_out))
        assert result["rel_error"] <= TOLERANCE[torch.float32] and result["tflops"] > 0


def test_a_library_peer_on_rotary_work_can_take_vitunes_rotation_as_auto_runs_it(monkeypatch):
    """The crown times a library on a rotary bucket as `auto` would run it: q and k rotated
    by vitune's rotation pass (rotate.py), not by torch; both ways attend correctly."""
    from vitune.bench import backends
    from vitune.tuner.trial import TrialRequest, run_trial

    w = Workload("rotary", (12, 12), heads=1, head_dim=32, dtype="float32", rotary=True)
    q, k, v = w.make_qkv("cpu")
    cu = w.cu_seqlens("cpu")
    trig = w.make_rotary("cpu")
    ref = reference_attention(q, k, v, cu, compute_dtype=torch.float64, rotary=trig)
    passes, real = [], backends.rotate_rows
    monkeypatch.setattr(backends, "rotate_rows", lambda x, *a: passes.append(x) or real(x, *a))
    torch_way = prepare_peer("sdpa-masked", w, q, k, v, cu, trig)
    assert check_backend(torch_way, ref) <= TOLERANCE[torch.float32] and passes == []
    vitune_way = prepare_peer("sdpa-masked", w, q, k, v, cu, trig, vitune_rotation=True)
    assert check_backend(vitune_way, ref) <= TOLERANCE[torch.float32]
    assert [id(x) for x in passes] == [id(q), id(k)]
    result = run_trial(TrialRequest(w, "sdpa-masked", None, interpret=True,
                                    vitune_rotation=True))
    assert result["rel_error"] <= TOLERANCE[torch.float32] and len(passes) > 2
