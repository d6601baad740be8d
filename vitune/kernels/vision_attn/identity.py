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


@functools.cache
def kernel_hash() -> str:
    """12 hex digits of the SHA-256 of HASHED_SOURCES' code, read from this package's
    folder (no import of the kernels needed)."""
    digest = hashlib.sha256()
    folder = Path(__file__).resolve().parent
    for name in HASHED_SOURCES:
        digest.update(code_text((folder / name).read_text(encoding="utf-8")).encode())
    return digest.hexdigest()[:12]


def code_text(source: str) -> str:
    """The source's own text less its comments, trailing spaces and blank lines. Text, not
    tokens: token numbers and the splitting of f-strings differ between Python versions,
    and the hash must not (every Python reads the same shipped files)."""
    lines = source.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:  # (a comment runs to the end of its line)
            row, col = tok.start
            lines[row - 1] = lines[row - 1][:col]
    return "\n".join(line.rstrip() for line in lines if line.strip())
