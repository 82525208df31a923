"""Replay of a recorded trace: its send times and, for LLM traces, each request's prompt and output sizes.

Example::

    from mlops_lb.load.trace import trace
    t = trace("recorded.csv")                          # timestamp[, prompt_tokens, output_tokens]
    t.has_sizes, t.describe()
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._validate import check_int, show
from ._profile_base import CHUNK, MAX_DURATION_S, MAX_REQUESTS, LoadProfile, _fail

if TYPE_CHECKING:
    import numpy as np

__all__ = ["TraceProfile", "trace"]


# --------------------------------------------------------------------------- replay
@dataclass(frozen=True)
class TraceProfile(LoadProfile, kind="trace"):
    """Replay of recorded send times, optionally with each request's sizes (see :func:`trace`)."""

    offsets: tuple[float, ...] = (0.0,)
    source: str = ""
    prompt_tokens: tuple[int, ...] = ()
    output_tokens: tuple[int, ...] = ()

    def _validate(self) -> None:
        import numpy as np

        if not self.offsets:
            _fail("trace", "must contain at least one timestamp")
        arr = np.asarray(self.offsets, dtype=float)
        if not np.isfinite(arr).all():
            _fail("trace", "timestamps must be finite numbers")
        if arr.min() < 0 or arr.max() > MAX_DURATION_S:
            _fail("trace", f"offsets must be between 0 and {MAX_DURATION_S:g} s")
        if len(arr) > MAX_REQUESTS:
            _fail("trace", f"must have at most {MAX_REQUESTS:,} timestamps (got {len(arr):,})")
        if len(arr) > 1 and bool((np.diff(arr) < 0).any()):
            _fail("trace", "offsets must be sorted (trace() sorts them, with their sizes)")
        for name in ("prompt_tokens", "output_tokens"):
            sizes = getattr(self, name)
            if not sizes:
                continue
            if len(sizes) != len(arr):
                _fail(name, f"must have one size per timestamp ({len(arr)}) (got {len(sizes)})")
            sz = np.asarray(sizes)
            if sz.dtype.kind not in "iu" or int(sz.min()) < 1:
                _fail(name, "must be whole numbers of tokens >= 1")
        if bool(self.prompt_tokens) != bool(self.output_tokens):
            _fail(
                "output_tokens" if self.prompt_tokens else "prompt_tokens",
                "must be given with the other size",
            )

    @property
    def has_sizes(self) -> bool:
        """True when each request carries its own prompt and output length (a recorded LLM trace)."""
        return bool(self.prompt_tokens)

    @property
    def duration_s(self) -> float:
        return float(self.offsets[-1])

    def expected_requests(self) -> float:
        return float(len(self.offsets))

    def iter_schedule(self, chunk: int = CHUNK) -> Iterator[np.ndarray]:
        import numpy as np

        check_int("chunk", chunk, 1)
        for start in range(0, len(self.offsets), chunk):
            yield np.asarray(self.offsets[start : start + chunk], dtype=float)

    def rate_at(self, t: float) -> float:
        import numpy as np

        arr = np.asarray(self.offsets, dtype=float)
        lo, hi = np.searchsorted(arr, [t - 0.5, t + 0.5], side="left")
        return float(hi - lo)

    def describe(self) -> str:
        src = f" from {self.source}" if self.source else ""
        sized = ", with request sizes" if self.has_sizes else ""
        return f"trace of {len(self.offsets):,} requests over {self.duration_s:g} s{src}{sized}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "offsets": list(self.offsets), "source": self.source}
        if self.has_sizes:
            out.update(prompt_tokens=list(self.prompt_tokens), output_tokens=list(self.output_tokens))
        return out


def trace(
    path_or_seconds: str | os.PathLike[str] | Sequence[float],
    *,
    column: str | None = None,
    prompt_tokens: Sequence[int] | None = None,
    output_tokens: Sequence[int] | None = None,
) -> TraceProfile:
    """Replay send times: a CSV file (a column of timestamps in seconds) or a sequence of seconds.

    Times are shifted so the first one is 0. The CSV column is ``column`` if given, else the first of
    ``timestamp``, ``t``, ``time``, ``send_at``, ``offset_s`` … present, else the first column. A recorded LLM
    trace may also carry each request's size: CSV columns ``prompt_tokens`` (or ``input_tokens``,
    ``input_length``, ``ContextTokens`` …) and ``output_tokens`` (or ``output_length``, ``GeneratedTokens`` …),
    or the ``prompt_tokens``/``output_tokens`` arguments; :func:`mlops_lb.load.openai_chat` (``profile=``) then
    builds each request with its own lengths.

    Example::

        trace("recorded.csv")                # header 'timestamp', one send time per row
        trace([0.0, 0.01, 0.5, 0.51])
        trace([0.0, 0.2], prompt_tokens=[512, 40], output_tokens=[128, 300])
    """
    from pathlib import Path

    from ._trace_csv import read_trace_csv

    source = ""
    sizes: dict[str, list[int]] = {}
    if isinstance(path_or_seconds, (str, os.PathLike)):
        source = str(path_or_seconds)
        values, sizes = read_trace_csv(Path(path_or_seconds), column)
    else:
        if not isinstance(path_or_seconds, Sequence) and not hasattr(path_or_seconds, "__array__"):
            _fail(
                "trace", f"must be a CSV path or a sequence of seconds (got {type(path_or_seconds).__name__})"
            )
        values = []
        for i, v in enumerate(path_or_seconds):  # type: ignore[union-attr]
            if isinstance(v, bool) or (not isinstance(v, (int, float)) and not hasattr(v, "__float__")):
                _fail(f"trace[{i}]", f"must be a number of seconds (got {v!r})")
            values.append(float(v))  # type: ignore[arg-type]
    for name, given in (("prompt_tokens", prompt_tokens), ("output_tokens", output_tokens)):
        if given is not None:
            if isinstance(given, (str, bytes)) or not hasattr(given, "__len__"):
                _fail(name, f"must be a sequence of token counts (got {show(given)})")
            sizes[name] = [check_int(f"{name}[{i}]", v, 1) for i, v in enumerate(given)]
    if not values:
        _fail("trace", "must contain at least one timestamp")
    if not all(math.isfinite(v) for v in values):
        _fail("trace", "timestamps must be finite numbers")
    for name, got in sizes.items():
        if len(got) != len(values):
            _fail(name, f"must have one size per timestamp ({len(values)}) (got {len(got)})")
    first = min(values)
    order = sorted(range(len(values)), key=values.__getitem__)  # stable: equal times keep their sizes' order
    picked = {name: tuple(got[i] for i in order) for name, got in sizes.items()}
    return TraceProfile(
        offsets=tuple(values[i] - first for i in order),
        source=source,
        prompt_tokens=picked.get("prompt_tokens", ()),
        output_tokens=picked.get("output_tokens", ()),
    )
