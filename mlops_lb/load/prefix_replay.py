"""Replaying a trace *with its prefix structure*: each ``hash_id`` becomes a fixed block of words on the wire.

Mooncake-style traces name each prompt by the ids of its blocks (``hash_ids``, one per ``block_tokens`` tokens;
equal ids = the same KV block). :func:`prefix_chat` turns every id into a deterministic block of words (the
emulator's tokens): the same id always gives the same bytes, in every request, process and run, so two requests
that share a prefix in the trace share it on the wire, and a prefix cache (the LLM emulator's, or vLLM's) sees the
reuse the trace recorded. A prompt's last block is cut to the trace's ``input_length``.

Each request also carries a **routing key** in the header ``key_header`` (default ``X-Prefix-Key``, the name the
routing section's ``key_header`` uses). The client (this load generator) computes it, not the router:

* ``key="prefix"``: a hash of the first ``key_blocks`` ids (default 2). On the Mooncake conversation trace, where
  block 0 is one prompt shared by every request, 2 blocks give 7,373 distinct keys for 12,031 requests and keep
  93 % of the reusable blocks (0.341 of 0.366 of all blocks) behind a key seen before (measured on the shipped file).
* ``key="session"``: a hash of the session id (a multi-turn trace: every turn of a conversation on one key).
* ``key="auto"`` (default): ``session`` when the trace has sessions, else ``prefix``.

``block_tokens`` shrinks (or grows) every block on the wire while keeping the structure: replaying Mooncake's
12,000-token prompts with ``block_tokens=32`` sends about 750-token prompts that share exactly what the originals
shared (the emulator's ``max_model_len`` and prefill cost then stay in a laptop's range).

Example::

    from mlops_lb import load
    t = load.trace("mooncake-conv-2025", duration_s=60)
    bodies = load.prefix_chat(model="m", profile=t, block_tokens=32)
    load.run_load(url + "/v1/chat/completions", t, payloads=bodies)
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
from typing import Any

from .._validate import check_bool, check_choice, check_int, check_str, fail, show
from ._wire import Keyed
from .trace import TraceProfile

__all__ = ["DEFAULT_KEY_BLOCKS", "DEFAULT_KEY_HEADER", "PrefixBodies", "block_words", "prefix_chat"]

DEFAULT_KEY_HEADER = "X-Prefix-Key"
DEFAULT_KEY_BLOCKS = 2
# RFC 9110 §5.6.2: a field name is a token.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Short lower-case words: each is one emulator token, and readable in a captured request.
_VOCAB = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima",
    "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey",
    "xray", "yankee", "zulu", "red", "green", "blue", "black", "white", "grey", "north", "south", "east", "west",
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "river", "stone", "cloud",
    "field", "light", "night", "paper", "glass", "metal", "water", "fire", "earth", "wind", "tree", "leaf", "seed",
)  # fmt: skip


@functools.lru_cache(maxsize=8192)
def block_words(hash_id: int, block_tokens: int, seed: int = 0) -> str:
    """The ``block_tokens`` words that stand for block ``hash_id``: the same id, the same words, everywhere.

    Seeded from the id alone (``random.Random`` with an int seed is reproducible across Python versions), so it
    does not depend on the order requests are built in.

    Example::

        block_words(7, 4)        # four words, always the same ones for id 7
    """
    rng = random.Random(hash_id * 1_000_003 + seed)
    return " ".join(rng.choices(_VOCAB, k=block_tokens))


class PrefixBodies:
    """``i -> Keyed(body, [(key_header, key)])`` for request ``i`` of a trace with ``hash_ids`` (see
    :func:`prefix_chat`). Picklable, so sharded and multi-process runs build the same bytes.

    Example::

        bodies = prefix_chat(model="m", profile=t)
        bodies(0).body, bodies.key(0), len(bodies)
    """

    def __init__(
        self,
        *,
        model: str,
        profile: TraceProfile,
        key: str,
        key_blocks: int,
        key_header: str | None,
        block_tokens: int,
        max_tokens: int,
        stream: bool,
        api: str,
        seed: int,
    ) -> None:
        self.model = model
        self.hash_ids = profile.hash_ids
        self.sessions = profile.sessions
        self.prompt_tokens = profile.prompt_tokens
        self.output_tokens = profile.output_tokens
        self.trace_block_tokens = profile.block_tokens
        self.key_mode = key
        self.key_blocks = key_blocks
        self.key_header = key_header
        self.block_tokens = block_tokens
        self.max_tokens = max_tokens
        self.stream = stream
        self.api = api
        self.seed = seed

    def __len__(self) -> int:
        return len(self.hash_ids)

    def key(self, i: int) -> str:
        """Request ``i``'s routing key: 16 hex digits of a BLAKE2b hash of its first blocks or its session."""
        j = i % len(self.hash_ids)
        if self.key_mode == "session":
            basis = "s:" + self.sessions[j]
        else:
            basis = "p:" + ",".join(str(h) for h in self.hash_ids[j][: self.key_blocks])
        return hashlib.blake2b(basis.encode(), digest_size=8).hexdigest()

    def prompt(self, i: int) -> str:
        """Request ``i``'s prompt: one block of words per hash id, the last cut to the trace's prompt length."""
        j = i % len(self.hash_ids)
        ids = self.hash_ids[j]
        bt = self.block_tokens
        words = [block_words(h, bt, self.seed) for h in ids[:-1]]
        last = bt
        if self.prompt_tokens:
            # The trace's last block holds prompt - (n-1) x its block size tokens: keep that share of a block.
            tail = self.prompt_tokens[j] - (len(ids) - 1) * self.trace_block_tokens
            last = max(1, min(bt, round(tail * bt / self.trace_block_tokens)))
        full = block_words(ids[-1], bt, self.seed)
        words.append(full if last == bt else " ".join(full.split()[:last]))
        return " ".join(words)

    def __call__(self, i: int) -> Keyed:
        j = i % len(self.hash_ids)
        text = self.prompt(j)
        body: dict[str, Any] = {"model": self.model}
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": text}]
        else:
            body["prompt"] = text
        body["max_tokens"] = int(self.output_tokens[j]) if self.output_tokens else self.max_tokens
        if self.stream:
            body.update(stream=True, stream_options={"include_usage": True})
        else:
            body["stream"] = False
        raw = json.dumps(body, separators=(",", ":")).encode()
        headers = ((self.key_header, self.key(j)),) if self.key_header else ()
        return Keyed(raw, headers)


def prefix_chat(
    *,
    model: str,
    profile: TraceProfile,
    key: str = "auto",
    key_blocks: int = DEFAULT_KEY_BLOCKS,
    key_header: str | None = DEFAULT_KEY_HEADER,
    block_tokens: int | None = None,
    max_tokens: int = 64,
    stream: bool = True,
    api: str = "chat",
    seed: int = 0,
) -> PrefixBodies:
    """Request bodies that replay ``profile``'s prefix structure, each with its routing key (module docstring).

    ``profile``: a trace with ``hash_ids`` (:func:`mlops_lb.load.trace`, e.g. ``"mooncake-conv-2025"`` or
    ``"synthetic-multiturn"``). ``key``: ``auto`` | ``prefix`` | ``session``; ``key_blocks``: how many leading
    blocks make a prefix key; ``key_header``: the header that carries it (None: no header). ``block_tokens``: words
    per block on the wire (default: the trace's own). Output lengths come from the trace, else ``max_tokens``.
    ``api``: ``chat`` (``/v1/chat/completions``) or ``completions`` (``/v1/completions``).

    Example::

        t = load.trace("synthetic-multiturn")
        run_load(url + "/v1/chat/completions", t, payloads=load.prefix_chat(model="m", profile=t))
    """
    check_str("model", model)
    if not isinstance(profile, TraceProfile):
        fail("profile", f"must be a trace (mlops_lb.load.trace(...)) with hash_ids (got {show(profile)})")
    if not profile.has_prefixes:
        fail(
            "profile",
            f"has no hash_ids ({profile.describe()}): replay a trace with prefix structure, e.g. "
            "load.trace('mooncake-conv-2025') or load.trace('synthetic-multiturn'), or use load.openai_chat",
        )
    check_choice("key", key, ("auto", "prefix", "session"))
    if key == "auto":
        key = "session" if profile.sessions else "prefix"
    if key == "session" and not profile.sessions:
        fail("key", "is 'session' but the trace has no session ids: use key='prefix' (the first blocks)")
    check_int("key_blocks", key_blocks, 1, 100_000)
    if key_header is not None and not _TOKEN.fullmatch(check_str("key_header", key_header)):
        fail("key_header", f"must be an HTTP field name (letters, digits, -) (got {show(key_header)})")
    bt = (
        profile.block_tokens
        if block_tokens is None
        else check_int("block_tokens", block_tokens, 1, 1_000_000)
    )
    check_int("max_tokens", max_tokens, 1, 1_000_000)
    check_bool("stream", stream)
    check_choice("api", api, ("chat", "completions"))
    check_int("seed", seed, 0)
    return PrefixBodies(
        model=model, profile=profile, key=key, key_blocks=key_blocks, key_header=key_header, block_tokens=bt,
        max_tokens=max_tokens, stream=stream, api=api, seed=seed,
    )  # fmt: skip
