"""Traces shipped with the package, by name, and a labelled synthetic multi-turn generator with prefix structure.

=========================  ======================================================================================
name                       what it is
=========================  ======================================================================================
``azure-conv-2023``        Azure LLM inference 2023, conversation service: 19,366 requests over 1 hour (arrival
                           times, prompt and output token counts; no prefix structure). CC BY 4.0.
``azure-code-2023``        the same for the code service: 8,819 requests. CC BY 4.0.
``mooncake-conv-2025``     Mooncake FAST'25 conversation trace: 12,031 requests over 59 min, with ``hash_ids`` (one
                           id per 512-token prompt block; equal ids = a shared prefix). Apache-2.0.
``synthetic-multiturn``    NOT recorded data: :func:`multiturn` with its defaults (stated parameters below).
=========================  ======================================================================================

Sources, licences and attribution: ``mlops_lb/data/traces/NOTICE`` (and :func:`shipped_traces`). The files are
the publishers' bytes, compressed.

Example::

    from mlops_lb.load.trace_library import shipped_traces, multiturn
    shipped_traces()                                  # name -> description, licence, source
    t = multiturn(sessions=50, seed=1)                # a TraceProfile with hash_ids and sessions
"""

from __future__ import annotations

from typing import Any

from .._validate import check_int, check_num, fail
from ._trace_names import SHIPPED, ShippedTrace, register_generated, shipped_traces
from .trace import TraceProfile, load_shipped

__all__ = ["SHIPPED", "ShippedTrace", "load_shipped", "multiturn", "shipped_traces"]


def multiturn(
    *,
    sessions: int = 120,
    session_rate: float = 1.0,
    turns: tuple[int, int] = (2, 8),
    think_s: float = 8.0,
    system_prompts: int = 4,
    system_blocks: int = 8,
    turn_blocks: tuple[int, int] = (1, 4),
    output_tokens: tuple[int, int] = (16, 96),
    block_tokens: int = 64,
    max_prompt_tokens: int = 3584,
    seed: int = 0,
) -> TraceProfile:
    """A **synthetic**, labelled multi-turn chat trace with prefix structure (``hash_ids`` and ``sessions``).

    The stated prefix-sharing model:

    * ``sessions`` conversations start as a Poisson process of ``session_rate`` per second.
    * Each picks one of ``system_prompts`` shared system prompts of ``system_blocks`` blocks (so sessions with
      the same system prompt share that prefix), and runs a number of turns uniform in ``turns``.
    * Each turn adds ``turn_blocks`` (uniform) new blocks to the conversation (the user's message and the previous
      answer); a turn's prompt is the whole conversation so far: system blocks + every earlier turn's blocks +
      its own (so turn *k* shares everything but its new blocks with turn *k-1*: the per-session growing context).
    * Turns are ``think_s`` apart on average (exponential), so other sessions' turns interleave.
    * A block is ``block_tokens`` tokens; a session ends early rather than pass ``max_prompt_tokens`` (keep it below
      the emulator's ``max_model_len`` minus the output). Outputs are uniform in ``output_tokens``.

    With the defaults: 120 sessions, about 5 turns each, prompts of 512 to 3,584 tokens, about 600 requests over
    about 2.5 minutes. Same arguments, same trace (``seed``).

    Example::

        t = multiturn(sessions=20, session_rate=2, seed=3)
        t.sessions[:3], t.hash_ids[0][:8]
    """
    import numpy as np

    check_int("sessions", sessions, 1, 1_000_000)
    check_num("session_rate", session_rate, 0, 1_000_000, lo_open=True)
    check_num("think_s", think_s, 0, 86_400)
    check_int("system_prompts", system_prompts, 1, 1_000_000)
    check_int("system_blocks", system_blocks, 0, 100_000)
    check_int("block_tokens", block_tokens, 1, 1_000_000)
    check_int("max_prompt_tokens", max_prompt_tokens, 1)
    check_int("seed", seed, 0)
    t_lo, t_hi = _pair("turns", turns, 1)
    b_lo, b_hi = _pair("turn_blocks", turn_blocks, 1)
    o_lo, o_hi = _pair("output_tokens", output_tokens, 1)
    if (system_blocks + b_lo) * block_tokens > max_prompt_tokens:
        fail(
            "max_prompt_tokens",
            f"must hold at least one turn: (system_blocks + turn_blocks[0]) x block_tokens = "
            f"{(system_blocks + b_lo) * block_tokens} (got {max_prompt_tokens})",
        )
    rng = np.random.default_rng(seed)
    next_id = system_prompts * system_blocks  # ids below are the system prompts' blocks
    rows: list[tuple[float, int, int, tuple[int, ...], str]] = []
    start = 0.0
    for s in range(sessions):
        start += float(rng.exponential(1.0 / session_rate))
        sysp = int(rng.integers(0, system_prompts))
        context = list(range(sysp * system_blocks, (sysp + 1) * system_blocks))
        when = start
        for k in range(int(rng.integers(t_lo, t_hi + 1))):
            new = int(rng.integers(b_lo, b_hi + 1))
            if (len(context) + new) * block_tokens > max_prompt_tokens:
                break
            context += range(next_id, next_id + new)
            next_id += new
            if k:
                when += float(rng.exponential(think_s)) if think_s else 0.0
            out = int(rng.integers(o_lo, o_hi + 1))
            rows.append((when, len(context) * block_tokens, out, tuple(context), f"s{s}"))
    rows.sort(key=lambda r: r[0])  # stable: a session's turns keep their order
    t0 = rows[0][0]
    return TraceProfile(
        offsets=tuple(r[0] - t0 for r in rows),
        source=f"synthetic-multiturn(sessions={sessions}, seed={seed})",
        prompt_tokens=tuple(r[1] for r in rows),
        output_tokens=tuple(r[2] for r in rows),
        hash_ids=tuple(r[3] for r in rows),
        sessions=tuple(r[4] for r in rows),
        block_tokens=block_tokens,
    )


def _pair(name: str, value: Any, lo: int) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        fail(name, f"must be an int or a (low, high) pair (got {value!r})")
    a = check_int(f"{name}[0]", value[0], lo)
    b = check_int(f"{name}[1]", value[1], a)
    return a, b


register_generated("synthetic-multiturn", multiturn)
