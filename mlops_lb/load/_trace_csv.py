"""Reading a recorded trace file: send times and, for LLM traces, each request's sizes and prefix structure.

Two formats, each plain or compressed (``.gz``, ``.xz``):

* **CSV** with a header (or one bare column of seconds): a time column (``timestamp``, ``TIMESTAMP``, ``t`` …, in
  seconds, or ISO date-times such as Azure's ``2023-11-16 18:15:46.6805900``), optional sizes (``prompt_tokens`` /
  ``input_length`` / ``ContextTokens`` …, ``output_tokens`` / ``output_length`` / ``GeneratedTokens`` …), optional
  ``hash_ids`` (a JSON list ``[1, 2, 3]`` or ints separated by spaces) and ``session_id`` / ``turn``.
* **JSONL**, Mooncake's and Alibaba's trace format (https://github.com/kvcache-ai/Mooncake, FAST25-release): one
  object a line with ``timestamp`` **in milliseconds** (Mooncake's definition), ``input_length``,
  ``output_length``, ``hash_ids`` (one id per 512-token block; equal ids mean a shared prefix), and optionally
  ``session_id`` / ``turn``.

A file is refused, naming its line and column, when a time is missing or goes backwards (a recording's clock only
moves forward; ``sort=True`` sorts a file known to be unordered), a column is unknown (a typo would otherwise be
silently ignored), or ``hash_ids`` is not a list of integers.

Example::

    data = read_trace_file(Path("recorded.csv"), column=None)
    data.values, data.sizes.get("prompt_tokens"), data.hash_ids
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import lzma
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._validate import fail
from ..errors import SpecError

__all__ = [
    "HASH_COLUMNS",
    "OUTPUT_COLUMNS",
    "PROMPT_COLUMNS",
    "SESSION_COLUMNS",
    "TIME_COLUMNS",
    "TraceData",
    "read_trace_csv",
    "read_trace_file",
]

TIME_COLUMNS = (
    "timestamp", "timestamp_s", "t", "time", "time_s", "send_at", "sent_at", "offset_s", "ts", "TIMESTAMP",
)  # fmt: skip
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
HASH_COLUMNS = ("hash_ids",)
SESSION_COLUMNS = ("session_id", "session", "conversation_id", "chat_id")
TURN_COLUMNS = ("turn", "turn_id", "round")
# Row identifiers that carry nothing to replay: accepted and ignored.
ID_COLUMNS = ("id", "request_id", "index", "idx")
KNOWN_COLUMNS = (
    *TIME_COLUMNS, *PROMPT_COLUMNS, *OUTPUT_COLUMNS, *HASH_COLUMNS, *SESSION_COLUMNS, *TURN_COLUMNS, *ID_COLUMNS,
)  # fmt: skip
MAX_HASH_IDS = 100_000  # a 51-million-token prompt at 512 tokens a block: far past any context length


@dataclass
class TraceData:
    """What a trace file holds, in file order: times in seconds as written (not shifted), and the optional
    per-request columns (each list as long as ``values`` when present)."""

    values: list[float] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # each record's line in the file, for messages
    sizes: dict[str, list[int]] = field(default_factory=dict)
    hash_ids: list[tuple[int, ...]] | None = None
    sessions: list[str] | None = None
    turns: list[int] | None = None


def read_trace_csv(path: Path, column: str | None) -> tuple[list[float], dict[str, list[int]]]:
    """(send times as written, sizes): the CSV part of :func:`read_trace_file`, kept for its callers."""
    data = read_trace_file(path, column, sort=True)
    return data.values, data.sizes


def read_trace_file(
    path: Path, column: str | None, *, sort: bool = False, time_unit: str | None = None
) -> TraceData:
    """Read a CSV or JSONL trace (see the module docstring); SpecError naming the line and column otherwise.

    ``time_unit``: ``"s"`` or ``"ms"``; None means seconds for CSV and milliseconds for JSONL.
    """
    name = path.name.lower()
    for ext in (".gz", ".xz"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    text = _read_text(path)
    if name.endswith((".jsonl", ".ndjson")):
        data = _read_jsonl(path, text, 1.0 if time_unit == "s" else 0.001)
    else:
        data = _read_csv(path, text, column, 0.001 if time_unit == "ms" else 1.0)
    if not sort:
        _check_monotonic(path, data)
    return data


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        elif raw[:6] == b"\xfd7zXZ\x00":
            raw = lzma.decompress(raw)
        return raw.decode("utf-8-sig")
    except (OSError, ValueError, EOFError, lzma.LZMAError) as exc:  # ValueError: a NUL in the path, not text
        raise SpecError("trace", f"cannot read {path!s}: {exc}") from exc


def _check_monotonic(path: Path, data: TraceData) -> None:
    values = data.values
    for i in range(1, len(values)):
        if values[i] < values[i - 1]:
            fail(
                "trace",
                f"{path} line {data.lines[i]}: timestamp {values[i]:g} s is earlier than the line before "
                f"({values[i - 1]:g} s): a recording's times only move forward (pass sort=True to sort the file)",
            )


def _read_csv(path: Path, text: str, column: str | None, scale: float) -> TraceData:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        fail("trace", f"{path} is empty")
    header = [h.strip() for h in rows[0]]
    has_header = any(_not_number(h) and _parse_time(h) is None for h in header)
    col = 0
    size_cols: dict[str, int] = {}
    hash_col = session_col = turn_col = None
    if has_header:
        if column is not None:
            if column not in header:
                fail("trace", f"column {column!r} not in {path} (columns: {header})")
            col = header.index(column)
        else:
            col = next((header.index(c) for c in TIME_COLUMNS if c in header), 0)
        known = set(KNOWN_COLUMNS) | {header[col]}
        for h in header:
            if h not in known:
                from .._validate import did_you_mean

                fail(
                    "trace",
                    f"{path} line 1: unknown column {h!r}{did_you_mean(h, KNOWN_COLUMNS)}; known columns: "
                    f"time ({', '.join(TIME_COLUMNS)}), sizes ({', '.join(PROMPT_COLUMNS + OUTPUT_COLUMNS)}), "
                    f"{', '.join(HASH_COLUMNS + SESSION_COLUMNS + TURN_COLUMNS + ID_COLUMNS)}: remove or rename it",
                )
        for key, names in (("prompt_tokens", PROMPT_COLUMNS), ("output_tokens", OUTPUT_COLUMNS)):
            found = next((header.index(c) for c in names if c in header), None)
            if found is not None:
                size_cols[key] = found
        hash_col = next((header.index(c) for c in HASH_COLUMNS if c in header), None)
        session_col = next((header.index(c) for c in SESSION_COLUMNS if c in header), None)
        turn_col = next((header.index(c) for c in TURN_COLUMNS if c in header), None)
        rows = rows[1:]
    data = TraceData(sizes={k: [] for k in size_cols})
    if hash_col is not None:
        data.hash_ids = []
    if session_col is not None:
        data.sessions = []
    if turn_col is not None:
        data.turns = []
    name_of = (lambda c: header[c]) if has_header else (lambda c: f"column {c + 1}")
    first: datetime | None = None
    for n, row in enumerate(rows, start=2 if has_header else 1):
        if not row or not any(cell.strip() for cell in row):
            continue  # a blank line
        cell = row[col].strip() if col < len(row) else ""
        if not cell:
            fail("trace", f"{path} line {n}, column {name_of(col)!r}: the timestamp is missing")
        data.lines.append(n)
        try:
            data.values.append(float(cell) * scale)
        except ValueError:
            when = _parse_time(cell)
            if when is None:
                fail(
                    "trace",
                    f"{path} line {n}, column {name_of(col)!r}: {cell!r} is not a number of seconds or a date-time",
                )
            first = first or when
            data.values.append((when - first).total_seconds())
        for key, c in size_cols.items():
            got = row[c].strip() if c < len(row) else ""
            if not got.isdigit() or int(got) < 1:
                fail(
                    key,
                    f"{path} line {n}, column {name_of(c)!r}: {got!r} is not a whole number of tokens >= 1",
                )
            data.sizes[key].append(int(got))
        if hash_col is not None and data.hash_ids is not None:
            got = row[hash_col].strip() if hash_col < len(row) else ""
            data.hash_ids.append(_hash_ids(got, f"{path} line {n}, column {name_of(hash_col)!r}"))
        if session_col is not None and data.sessions is not None:
            data.sessions.append(row[session_col].strip() if session_col < len(row) else "")
        if turn_col is not None and data.turns is not None:
            got = row[turn_col].strip() if turn_col < len(row) else ""
            if not got.isdigit():
                fail(
                    "trace",
                    f"{path} line {n}, column {name_of(turn_col)!r}: {got!r} is not a turn number >= 0",
                )
            data.turns.append(int(got))
    return data


def _read_jsonl(path: Path, text: str, scale: float) -> TraceData:
    data = TraceData(sizes={"prompt_tokens": [], "output_tokens": []})
    allowed = (
        "timestamp",
        "input_length",
        "output_length",
        "hash_ids",
        "session_id",
        "turn",
        "id",
        "request_id",
    )
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError) as exc:
            fail("trace", f"{path} line {n}: not a JSON object ({exc})")
        if not isinstance(rec, dict):
            fail("trace", f"{path} line {n}: must be a JSON object (got {type(rec).__name__})")
        for key in rec:
            if key not in allowed:
                from .._validate import did_you_mean

                fail(
                    "trace",
                    f"{path} line {n}: unknown field {key!r}{did_you_mean(str(key), allowed)} "
                    f"(known: {', '.join(allowed)})",
                )
        where = f"{path} line {n}"
        t = rec.get("timestamp")
        if t is None:
            fail("trace", f"{where}, field 'timestamp': the timestamp is missing")
        if (
            isinstance(t, bool)
            or not isinstance(t, (int, float))
            or t != t
            or t in (float("inf"), -float("inf"))
        ):
            fail("trace", f"{where}, field 'timestamp': {t!r} is not a number of milliseconds")
        data.values.append(float(t) * scale)
        data.lines.append(n)
        for key, field_name in (("prompt_tokens", "input_length"), ("output_tokens", "output_length")):
            v = rec.get(field_name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                fail(key, f"{where}, field {field_name!r}: {v!r} is not a whole number of tokens >= 1")
            data.sizes[key].append(v)
        for key, attr in (("hash_ids", "hash_ids"), ("session_id", "sessions"), ("turn", "turns")):
            has = key in rec
            if getattr(data, attr) is None and has and len(data.values) > 1:
                fail(
                    "trace",
                    f"{where}: field {key!r} appears here but not on line(s) before: give it on every line",
                )
            if getattr(data, attr) is not None and not has:
                fail("trace", f"{where}: field {key!r} is missing (the lines before have it)")
            if not has:
                continue
            if getattr(data, attr) is None:
                setattr(data, attr, [])
            v = rec[key]
            if key == "hash_ids":
                data.hash_ids.append(_hash_list(v, f"{where}, field 'hash_ids'"))  # type: ignore[union-attr]
            elif key == "session_id":
                data.sessions.append(str(v))  # type: ignore[union-attr]
            else:
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    fail("trace", f"{where}, field 'turn': {v!r} is not a turn number >= 0")
                data.turns.append(v)  # type: ignore[union-attr]
    if not data.values:
        fail("trace", f"{path} has no requests")
    return data


def _hash_ids(cell: str, where: str) -> tuple[int, ...]:
    if cell.startswith("["):
        try:
            value: Any = json.loads(cell)
        except (ValueError, RecursionError):
            fail("trace", f"{where}: hash_ids {cell[:40]!r} must be a list of integers such as [0, 1, 2]")
        return _hash_list(value, where)
    parts = cell.split()
    if not parts or not all(p.isdigit() for p in parts):
        fail(
            "trace",
            f"{where}: hash_ids {cell[:40]!r} must be a list of integers such as [0, 1, 2] or '0 1 2'",
        )
    return _hash_list([int(p) for p in parts], where)


def _hash_list(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        fail("trace", f"{where}: hash_ids must be a non-empty list of integers (got {str(value)[:40]!r})")
    if len(value) > MAX_HASH_IDS:
        fail("trace", f"{where}: hash_ids has {len(value):,} blocks (at most {MAX_HASH_IDS:,})")
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v >= 2**63:
            fail("trace", f"{where}: hash_ids[{i}] must be an integer >= 0 (got {str(v)[:40]!r})")
    return tuple(value)


def _parse_time(text: str) -> datetime | None:
    """An ISO date-time (``2023-11-16 18:15:46.6805900``: Azure's 7 fractional digits are cut to Python's 6)."""
    if len(text) < 10 or not text[:4].isdigit() or text[4:5] != "-":
        return None
    head, dot, frac = text.partition(".")
    if dot:
        digits = "".join(ch for ch in frac if ch.isdigit())
        rest = frac[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{rest}"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _not_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return True
    return False
