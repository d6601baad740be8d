"""The kernels' identity: a hash of the sources that decide what a tuned config means.

A tuned bucket records the hash it was tuned with; the tuner names its studies with it (trials
of an older kernel never mix with the new one's) and the runtime compares it with the
installed kernels' to say when a tuned file predates them. Only code counts: comments and
blank lines are left out, so editing a comment does not make every tuned file stale.
"""

from __future__ import annotations

import functools
import hashlib
import io
import tokenize
from pathlib import Path

# The kernels and their search space: a change to any of them can change which config wins.
HASHED_SOURCES = ("kernel.py", "windows.py", "space.py")
_NOT_CODE = {tokenize.COMMENT, tokenize.NL}


@functools.cache
def kernel_hash() -> str:
    """12 hex digits of the SHA-256 of HASHED_SOURCES' code, read from this package's
    folder (no import of the kernels needed)."""
    digest = hashlib.sha256()
    folder = Path(__file__).resolve().parent
    for name in HASHED_SOURCES:
        digest.update(code_tokens((folder / name).read_text(encoding="utf-8")).encode())
    return digest.hexdigest()[:12]


def code_tokens(source: str) -> str:
    """The source's tokens without comments and blank lines, one per line (indentation
    kept as INDENT/DEDENT tokens, so a change of nesting still counts)."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return "\n".join(f"{tok.type} {tok.string}" for tok in tokens if tok.type not in _NOT_CODE)
