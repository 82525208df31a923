"""Reading a recorded trace from CSV: send times in seconds and, for LLM traces, each request's sizes.

Example::

    values, sizes = read_trace_csv(Path("recorded.csv"), column=None)
    sizes.get("prompt_tokens")          # one int per row, when the file has such a column
"""

from __future__ import annotations

import csv
from pathlib import Path

from .._validate import fail
from ..errors import SpecError

__all__ = ["OUTPUT_COLUMNS", "PROMPT_COLUMNS", "TIME_COLUMNS", "read_trace_csv"]

TIME_COLUMNS = ("timestamp", "timestamp_s", "t", "time", "time_s", "send_at", "sent_at", "offset_s", "ts")
# Request-size columns of recorded LLM traces (ours, vLLM/GuideLLM-style names, Azure's LLM inference trace).
PROMPT_COLUMNS = (
    "prompt_tokens",
    "input_tokens",
    "input_length",
    "prompt_len",
    "context_tokens",
    "ContextTokens",
)
OUTPUT_COLUMNS = (
    "output_tokens", "output_length", "output_len", "max_tokens", "generated_tokens", "GeneratedTokens",
)  # fmt: skip


def read_trace_csv(path: Path, column: str | None) -> tuple[list[float], dict[str, list[int]]]:
    """(send times as written, {"prompt_tokens": [...], "output_tokens": [...]} for the size columns present)."""
    try:
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path, or a file that is not text
        raise SpecError("trace", f"cannot read {path!s}: {exc}") from exc
    if not rows:
        fail("trace", f"{path} is empty")
    header = [h.strip() for h in rows[0]]
    has_header = any(_not_number(h) for h in header)
    col = 0
    size_cols: dict[str, int] = {}
    if has_header:
        if column is not None:
            if column not in header:
                fail("trace", f"column {column!r} not in {path} (columns: {header})")
            col = header.index(column)
        else:
            col = next((header.index(c) for c in TIME_COLUMNS if c in header), 0)
        for name, names in (("prompt_tokens", PROMPT_COLUMNS), ("output_tokens", OUTPUT_COLUMNS)):
            found = next((header.index(c) for c in names if c in header), None)
            if found is not None:
                size_cols[name] = found
        rows = rows[1:]
    values: list[float] = []
    sizes: dict[str, list[int]] = {name: [] for name in size_cols}
    for n, row in enumerate(rows, start=2 if has_header else 1):
        if not row or not row[col].strip():
            continue
        try:
            values.append(float(row[col]))
        except ValueError:
            fail("trace", f"{path} line {n}: {row[col]!r} is not a number of seconds")
        for name, c in size_cols.items():
            cell = row[c].strip() if c < len(row) else ""
            if not cell.isdigit() or int(cell) < 1:
                fail(name, f"{path} line {n}: {cell!r} is not a whole number of tokens >= 1")
            sizes[name].append(int(cell))
    return values, sizes


def _not_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return True
    return False
