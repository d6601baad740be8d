"""Reading a JSON-lines file (bench rows), with errors of one sentence naming the file.
Plain Python: the report and the charts read rows without torch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path


def json_lines(path: str | Path) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) for each line that is not blank; the value is None where
    the line is not JSON. ValueError where the file cannot be read."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}"
                         ) from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError:
            yield number, None
