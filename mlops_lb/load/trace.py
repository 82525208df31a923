"""Replay of a recorded trace: its send times and, for LLM traces, each request's sizes and prefix structure.

A trace is a file (CSV or Mooncake-style JSONL, see :mod:`mlops_lb.load._trace_csv`), a list of seconds, or the
name of a trace shipped with the package (:data:`mlops_lb.load.trace_library.SHIPPED`: ``azure-conv-2023``,
``azure-code-2023``, ``mooncake-conv-2025``, and the labelled synthetic ``synthetic-multiturn``). A trace with
``hash_ids`` (one id per block of ``block_tokens`` prompt tokens; equal ids = a shared prefix) is replayed with its
structure by :func:`mlops_lb.load.prefix_replay.prefix_chat`.

Slicing (``start_s``/``duration_s``) keeps the recorded arrivals of the window; ``speed`` divides every gap
between arrivals by the same factor, so bursts stay bursts (nothing is resampled).

Example::

    from mlops_lb.load.trace import trace
    t = trace("recorded.csv")                          # timestamp[, prompt_tokens, output_tokens]
    t.has_sizes, t.describe()
    t = trace("azure-conv-2023", start_s=600, duration_s=120, speed=2.0)
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._validate import check_bool, check_choice, check_int, check_num, show
from ._profile_base import CHUNK, MAX_DURATION_S, MAX_REQUESTS, LoadProfile, _fail

if TYPE_CHECKING:
    import numpy as np

__all__ = ["TraceProfile", "load_shipped", "trace"]


# --------------------------------------------------------------------------- replay
@dataclass(frozen=True)
class TraceProfile(LoadProfile, kind="trace"):
    """Replay of recorded send times, optionally with each request's sizes (see :func:`trace`)."""

    offsets: tuple[float, ...] = (0.0,)
    source: str = ""
    prompt_tokens: tuple[int, ...] = ()
    output_tokens: tuple[int, ...] = ()
    # Prefix structure: per request, the ids of its prompt's blocks of block_tokens tokens (Mooncake's hash_ids),
    # and an optional session (conversation) id.
    hash_ids: tuple[tuple[int, ...], ...] = ()
    sessions: tuple[str, ...] = ()
    block_tokens: int = 512

    def _validate(self) -> None:
        import numpy as np

        # to_dict/from_dict turn the inner tuples into lists: normalise them back.
        if any(not isinstance(h, tuple) for h in self.hash_ids):
            object.__setattr__(self, "hash_ids", tuple(tuple(h) for h in self.hash_ids))
        check_int("block_tokens", self.block_tokens, 1, 1_000_000)
        for name in ("hash_ids", "sessions"):
            got = getattr(self, name)
            if got and len(got) != len(self.offsets):
                _fail(name, f"must have one entry per timestamp ({len(self.offsets)}) (got {len(got)})")
        for i, ids in enumerate(self.hash_ids):
            if not ids or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ids):
                _fail(f"hash_ids[{i}]", f"must be a non-empty list of integers >= 0 (got {show(ids)})")

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
    def has_prefixes(self) -> bool:
        """True when each request carries its prompt's block ids (a trace with prefix structure)."""
        return bool(self.hash_ids)

    @property
    def duration_s(self) -> float:
        return float(self.offsets[-1])

    def window(self, start_s: float = 0.0, duration_s: float | None = None) -> TraceProfile:
        """The requests sent in ``[start_s, start_s + duration_s)``, shifted so the window starts at 0.

        The recorded arrivals are kept as they are (no resampling). Example: ``t.window(600, 120)``.
        """
        start = check_num("start_s", start_s, 0, self.duration_s)
        end = (
            math.inf
            if duration_s is None
            else start + check_num("duration_s", duration_s, 0, None, lo_open=True)
        )
        keep = [i for i, t in enumerate(self.offsets) if start <= t < end]
        if not keep:
            _fail("duration_s", f"the window [{start:g}, {end:g}) s holds no request of this trace")
        return self._pick(keep, shift=self.offsets[keep[0]] if keep else 0.0)

    def scaled(self, speed: float) -> TraceProfile:
        """The same arrivals with every gap divided by ``speed`` (2.0 = twice the rate, same burstiness).

        Example: ``t.scaled(0.5)`` replays at half the recorded rate.
        """
        factor = check_num("speed", speed, 0, 1_000_000, lo_open=True)
        if factor == 1:
            return self
        return dataclasses.replace(self, offsets=tuple(t / factor for t in self.offsets))

    def head(self, n: int) -> TraceProfile:
        """The first ``n`` requests. Example: ``t.head(200)``."""
        check_int("n", n, 1)
        return self._pick(list(range(min(n, len(self.offsets)))), shift=0.0)

    def _pick(self, keep: Sequence[int], *, shift: float) -> TraceProfile:
        def sub(values: tuple[Any, ...]) -> tuple[Any, ...]:
            return tuple(values[i] for i in keep) if values else ()

        return dataclasses.replace(
            self,
            offsets=tuple(self.offsets[i] - shift for i in keep),
            prompt_tokens=sub(self.prompt_tokens),
            output_tokens=sub(self.output_tokens),
            hash_ids=sub(self.hash_ids),
            sessions=sub(self.sessions),
        )

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
        prefixed = f", with prefix blocks of {self.block_tokens} tokens" if self.has_prefixes else ""
        return f"trace of {len(self.offsets):,} requests over {self.duration_s:g} s{src}{sized}{prefixed}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "offsets": list(self.offsets), "source": self.source}
        if self.has_sizes:
            out.update(prompt_tokens=list(self.prompt_tokens), output_tokens=list(self.output_tokens))
        if self.has_prefixes:
            out.update(hash_ids=[list(h) for h in self.hash_ids], block_tokens=self.block_tokens)
        if self.sessions:
            out["sessions"] = list(self.sessions)
        return out


def trace(
    path_or_seconds: str | os.PathLike[str] | Sequence[float],
    *,
    column: str | None = None,
    prompt_tokens: Sequence[int] | None = None,
    output_tokens: Sequence[int] | None = None,
    hash_ids: Sequence[Sequence[int]] | None = None,
    sessions: Sequence[Any] | None = None,
    block_tokens: int | None = None,
    start_s: float = 0.0,
    duration_s: float | None = None,
    speed: float = 1.0,
    sort: bool = False,
    time_unit: str | None = None,
) -> TraceProfile:
    """Replay send times: a shipped trace's name, a trace file (CSV or JSONL), or a sequence of seconds.

    Names (:func:`mlops_lb.load.trace_library.shipped_traces` lists them with source and licence):
    ``azure-conv-2023``, ``azure-code-2023`` (Azure LLM inference 2023, CC-BY 4.0: arrival times and token
    counts), ``mooncake-conv-2025`` (Mooncake FAST'25 conversation trace, Apache-2.0: with ``hash_ids``) and
    ``synthetic-multiturn`` (our labelled synthetic generator, :func:`mlops_lb.load.trace_library.multiturn`).

    Times are shifted so the first one is 0. A CSV's time column is ``column`` if given, else the first of
    ``timestamp``, ``TIMESTAMP``, ``t``, ``time``, ``send_at``, ``offset_s`` … present, else the first column; values
    are seconds (``time_unit="ms"`` for milliseconds) or ISO date-times. JSONL (Mooncake's format) times are
    milliseconds. Size columns (``prompt_tokens``/``input_length``/``ContextTokens`` …, ``output_tokens``/
    ``output_length``/``GeneratedTokens`` …), ``hash_ids`` and ``session_id`` come along; so may the arguments of
    the same names for a list of seconds. A file whose times go backwards is refused with the line (``sort=True``
    sorts it, keeping each row's columns with its time); so is an unknown column or a ``hash_ids`` that is not a
    list of integers. ``start_s``/``duration_s`` keep one window; ``speed`` divides every inter-arrival gap.

    Example::

        trace("recorded.csv")                # header 'timestamp', one send time per row
        trace([0.0, 0.01, 0.5, 0.51])
        trace([0.0, 0.2], prompt_tokens=[512, 40], output_tokens=[128, 300])
        trace("azure-conv-2023", start_s=300, duration_s=60, speed=0.5)
        trace([0.0, 1.0], prompt_tokens=[40, 60], output_tokens=[8, 8], hash_ids=[[7, 8], [7, 8, 9]], block_tokens=16)
    """
    from pathlib import Path

    from ._trace_csv import TraceData, read_trace_file

    check_bool("sort", sort)
    if time_unit is not None:
        check_choice("time_unit", time_unit, ("s", "ms"))
    source = ""
    data = TraceData()
    if isinstance(path_or_seconds, str) and not isinstance(path_or_seconds, os.PathLike):
        from ._trace_names import SHIPPED

        if path_or_seconds in SHIPPED:
            base = load_shipped(path_or_seconds)
            if any(v is not None for v in (prompt_tokens, output_tokens, hash_ids, sessions)):
                _fail("trace", f"{path_or_seconds!r} is a shipped trace: it brings its own columns")
            if block_tokens is not None:
                base = dataclasses.replace(base, block_tokens=check_int("block_tokens", block_tokens, 1))
            return _slice(base, start_s, duration_s, speed)
    if isinstance(path_or_seconds, (str, os.PathLike)):
        source = str(path_or_seconds)
        path = Path(path_or_seconds)
        if isinstance(path_or_seconds, str) and not path.exists() and os.sep not in path_or_seconds:
            from .._validate import did_you_mean
            from ._trace_names import SHIPPED

            hint = did_you_mean(path_or_seconds, SHIPPED)
            if hint or "." not in path_or_seconds:
                _fail(
                    "trace",
                    f"{path_or_seconds!r} is neither a file nor a shipped trace{hint} (shipped: {', '.join(SHIPPED)})",
                )
        data = read_trace_file(path, column, sort=sort, time_unit=time_unit)
    else:
        if not isinstance(path_or_seconds, Sequence) and not hasattr(path_or_seconds, "__array__"):
            _fail(
                "trace", f"must be a CSV path or a sequence of seconds (got {type(path_or_seconds).__name__})"
            )
        for i, v in enumerate(path_or_seconds):  # type: ignore[union-attr]
            if isinstance(v, bool) or (not isinstance(v, (int, float)) and not hasattr(v, "__float__")):
                _fail(f"trace[{i}]", f"must be a number of seconds (got {v!r})")
            data.values.append(float(v))  # type: ignore[arg-type]
        sort = True  # a list given in code is sorted, with its columns (the documented behaviour)
    values, sizes = data.values, data.sizes
    for name, given in (("prompt_tokens", prompt_tokens), ("output_tokens", output_tokens)):
        if given is not None:
            if isinstance(given, (str, bytes)) or not hasattr(given, "__len__"):
                _fail(name, f"must be a sequence of token counts (got {show(given)})")
            sizes[name] = [check_int(f"{name}[{i}]", v, 1) for i, v in enumerate(given)]
    if hash_ids is not None:
        from ._trace_csv import _hash_list

        if isinstance(hash_ids, (str, bytes)) or not hasattr(hash_ids, "__len__"):
            _fail("hash_ids", f"must be one list of integers per request (got {show(hash_ids)})")
        data.hash_ids = [_hash_list(list(h) if isinstance(h, (list, tuple)) else h, f"hash_ids[{i}]")
                         for i, h in enumerate(hash_ids)]  # fmt: skip
    if sessions is not None:
        if isinstance(sessions, (str, bytes)) or not hasattr(sessions, "__len__"):
            _fail("sessions", f"must be one session id per request (got {show(sessions)})")
        data.sessions = [str(v) for v in sessions]
    if not values:
        _fail("trace", "must contain at least one timestamp")
    if not all(math.isfinite(v) for v in values):
        _fail("trace", "timestamps must be finite numbers")
    columns: dict[str, list[Any]] = dict(sizes)
    if data.hash_ids is not None:
        columns["hash_ids"] = list(data.hash_ids)
    if data.sessions is not None:
        columns["sessions"] = list(data.sessions)
    for name, got in columns.items():
        if len(got) != len(values):
            what = "size" if name in sizes else "entry"
            _fail(name, f"must have one {what} per timestamp ({len(values)}) (got {len(got)})")
    first = min(values)
    order = list(range(len(values)))
    if sort:
        order.sort(key=values.__getitem__)  # stable: equal times keep their columns' order
    picked = {name: tuple(got[i] for i in order) for name, got in columns.items()}
    base = TraceProfile(
        offsets=tuple(values[i] - first for i in order),
        source=source,
        prompt_tokens=picked.get("prompt_tokens", ()),
        output_tokens=picked.get("output_tokens", ()),
        hash_ids=picked.get("hash_ids", ()),
        sessions=picked.get("sessions", ()),
        block_tokens=512 if block_tokens is None else check_int("block_tokens", block_tokens, 1, 1_000_000),
    )
    return _slice(base, start_s, duration_s, speed)


def _slice(t: TraceProfile, start_s: float, duration_s: float | None, speed: float) -> TraceProfile:
    if start_s or duration_s is not None:
        t = t.window(start_s, duration_s)
    return t.scaled(speed)


@functools.lru_cache(maxsize=8)
def load_shipped(name: str) -> TraceProfile:
    """The shipped trace ``name`` as a :class:`~mlops_lb.load.trace.TraceProfile` (read once per process).

    Example::

        load_shipped("mooncake-conv-2025").has_prefixes       # True
    """
    from importlib.resources import as_file, files

    from .._validate import did_you_mean, fail
    from ._trace_names import GENERATED, SHIPPED

    entry = SHIPPED.get(name)
    if entry is None:
        fail(
            "trace",
            f"{name!r} is not a shipped trace{did_you_mean(name, SHIPPED)} (shipped: {', '.join(SHIPPED)})",
        )
    if entry.file is None:
        # Registered by mlops_lb.load.trace_library, which importing mlops_lb.load always runs.
        built = GENERATED[name]()
        assert isinstance(built, TraceProfile)
        return built
    with as_file(files("mlops_lb").joinpath(f"data/traces/{entry.file}")) as path:
        t = trace(path)
    return dataclasses.replace(t, source=name)
