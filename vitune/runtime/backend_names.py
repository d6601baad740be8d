"""Every backend name vitune uses, in one place. Imports nothing, so the CLI's parser reads
it without torch.

Two kinds of name, and one table between them:
- a call's backend, `vision_attention(backend=...)`: CALL_BACKENDS. A tuned bucket's
  `backend:` in a configs file is one of them (TUNED_BACKENDS: what "auto" then runs).
- a measured backend, as `vitune bench` and the tuner's crown time it side by side:
  MEASURED_BACKENDS, the `backend` of a bench row and the keys of a bucket's `peers:` (and
  `peers_with_out:`).
  vitune's own call is measured five ways (VITUNE_PEERS: what "auto" picks, the tuned
  config, the built-in default, SGLang's fixed constants, and with rotary q and k rotated
  by a pass of their own before the call), the other libraries once each
  (their adapters: vitune.runtime.backends; as measured: vitune.bench.backends).
PEER_BACKENDS maps each measured library to the call backend that runs it: a bucket whose
peer measured fastest records that call backend, and "auto" runs it. The measured names
are kept as committed bench rows and configs files already record them.
"""

CALL_BACKENDS = ("auto", "triton", "sdpa", "sdpa_cudnn", "sdpa_flash", "varlen", "flash_attn")
TUNED_BACKENDS = tuple(name for name in CALL_BACKENDS if name != "auto")
# vitune's own call, measured five ways (with a given out= it writes that buffer itself)
VITUNE_PEERS = ("vitune-auto", "vitune-tuned", "vitune-default", "sglang-style-fixed",
                "vitune-rotate-first")
MEASURED_BACKENDS = (*VITUNE_PEERS, "sdpa-flash", "sdpa-cudnn", "sdpa-memeff", "sdpa-masked",
                     "varlen_attn", "flash_attn")
# Measured library -> the call backend that runs it. Also the libraries whose first call in
# a process loads and sets them up (seconds for cuDNN): workers call each once as they start.
PEER_BACKENDS = {"sdpa-cudnn": "sdpa_cudnn", "sdpa-flash": "sdpa_flash",
                 "varlen_attn": "varlen", "flash_attn": "flash_attn"}
