"""The kernels' identity: a hash of the sources that decide what a tuned config means.

A tuned bucket records the hash it was tuned with; the tuner names its studies with it (trials
of an older kernel never mix with the new one's) and the runtime compares it with the
installed kernels' to say when a tuned file predates them.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

# The kernels and their search space: a change to any of them can change which config wins.
HASHED_SOURCES = ("kernel.py", "windows.py", "space.py")


@functools.cache
def kernel_hash() -> str:
    """12 hex digits of the SHA-256 of HASHED_SOURCES, read from this package's folder (no
    import of the kernels needed)."""
    digest = hashlib.sha256()
    folder = Path(__file__).resolve().parent
    for name in HASHED_SOURCES:
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:12]
