"""Without TRITON_INTERPRET, CPU tensors get a clear error instead of a Triton traceback."""

import os
import subprocess
import sys

CODE = """
import torch, vitune
q = torch.randn(8, 1, 32)
try:
    vitune.vision_attention(q, q, q, torch.tensor([0, 8], dtype=torch.int32))
except ValueError as e:
    print("ERR", e)
"""


def test_cpu_tensors_without_interpreter_are_refused_clearly():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True,
                         timeout=120)
    assert "ERR q is on cpu: the Triton kernel needs CUDA tensors" in out.stdout, out.stderr
