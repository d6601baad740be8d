"""SGLang-compatible and transformers-compatible entry points, on the interpreter."""

import pytest
import torch
from conftest import make_packed

from vitune import reference_attention
from vitune.kernels.vision_attn.launch import kernel_is_interpreted
from vitune.kernels.vision_attn.reference import TOLERANCE, relative_error
from vitune.runtime.integrations import context_attention_fwd, hf_attention_forward

pytestmark = pytest.mark.skipif(torch.cuda.is_available() or not kernel_is_interpreted(),
                                reason="CPU lane")
TOL = TOLERANCE[torch.float32]


def test_sglang_signature_matches_reference():
    q, k, v, cu = make_packed([7, 0, 20, 5], heads=2, head_dim=40, dtype=torch.float32)
    lengths = torch.tensor([7, 0, 20, 5])
    starts = torch.tensor([0, 7, 7, 27])
    o = torch.full(q.shape, float("nan"))
    assert context_attention_fwd(q, k, v, o, starts, lengths, 20) is o
    assert relative_error(o, reference_attention(q, k, v, cu)) < TOL
    with pytest.raises(ValueError, match="is_causal=True is not supported"):
        context_attention_fwd(q, k, v, o, starts, lengths, 20, is_causal=True)
    with pytest.raises(TypeError, match="b_seq_len must be a 1-D int32 or int64 tensor"):
        context_attention_fwd(q, k, v, o, starts, lengths.float(), 20)


def test_hf_attention_batched_and_packed():
    module = torch.nn.Module()
    gen = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(2, 3, 18, 32, generator=gen) for _ in range(3))
    out, weights = hf_attention_forward(module, query, key, value, None, scaling=0.2)
    ref = reference_attention(*(x.transpose(1, 2) for x in (query, key, value)), scale=0.2)
    assert weights is None and out.shape == (2, 18, 3, 32)
    assert relative_error(out, ref) < TOL

    q, k, v, cu = make_packed([9, 14], heads=2, head_dim=32, dtype=torch.float32)
    packed = [x.transpose(0, 1)[None] for x in (q, k, v)]  # [1, H, T, D]
    out, _ = hf_attention_forward(module, *packed, None, cu_seq_lens_q=cu.long(),
                                  max_length_q=14)
    assert relative_error(out[0], reference_attention(q, k, v, cu)) < TOL
    with pytest.raises(ValueError, match="takes no attention_mask"):
        hf_attention_forward(module, query, key, value, torch.ones(2, 1, 18, 18))
