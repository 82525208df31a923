"""The LLM emulator's prefix cache: vLLM's automatic prefix caching as pure bookkeeping (no sockets, no clock).

Modelled on vLLM's design (https://docs.vllm.ai/en/latest/design/prefix_caching/, and the RFC
https://github.com/vllm-project/vllm/issues/2614):

* A prompt is cut into blocks of ``block_size`` tokens (vLLM's default block size is 16; ours too). Only *full*
  blocks are cached. Each block is named by a hash of its tokens **and of the hash of the block before it**, so a
  block is reused only when the whole prefix up to and including it is the same (:func:`block_hashes`).
* A new request reuses the longest run of its leading blocks that are in the cache; prefill then costs only the
  tokens after that run. As in vLLM, the last prompt token is always computed (the engine needs its logits), so a
  prompt that is entirely cached still prefills one token: the hit is capped at ``prompt_tokens - 1`` tokens.
* The cache holds at most ``capacity`` blocks. Blocks used by a running request are pinned (reference count > 0);
  a finished request's blocks become evictable, and eviction takes the least recently used first. A request's
  blocks are released in reverse order, so its tail blocks are evicted before its head (vLLM's free queue does
  the same: the shared prefix outlives the private tail).
* When the cache is full of pinned blocks a new block is simply not kept (vLLM would preempt; the emulator keeps
  serving and only loses the reuse).
* Accounting uses vLLM's metric semantics: ``queries`` counts prompt tokens looked up and ``hits`` the tokens found
  cached (``vllm:prefix_cache_queries`` and ``vllm:prefix_cache_hits``, "in terms of number of queried/cached
  tokens", vllm/v1/metrics/loggers.py); the hit rate is hits / queries.

Simplifications, stated: generated tokens are not cached (a multi-turn trace's next prompt names its history by
its own block ids); there is one cache per emulator process (one per target).

Example::

    cache = PrefixCache(capacity=1024, block_size=16)
    hashes = block_hashes("a b c ...".split(), 16)
    lease = cache.acquire(hashes, prompt_tokens=40)      # lease.hit_tokens: 0 the first time
    cache.release(lease)                                   # the request finished
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from .._validate import check_int

__all__ = ["Lease", "PrefixCache", "block_hashes"]


def block_hashes(tokens: Sequence[str], block_size: int) -> tuple[int, ...]:
    """The chained hash of each *full* block of ``tokens``: block *i*'s hash covers blocks 0..i.

    Python's ``hash`` is salted per process, which is fine: hashes are compared only inside one emulator.

    Example::

        block_hashes(["a"] * 40, 16)      # two hashes (the last 8 tokens make no full block)
    """
    out: list[int] = []
    parent = 0
    for start in range(0, len(tokens) - block_size + 1, block_size):
        parent = hash((parent, *tokens[start : start + block_size]))
        out.append(parent)
    return tuple(out)


@dataclass(frozen=True)
class Lease:
    """What one request got from the cache: the prompt tokens found cached and the blocks it pins until released."""

    hit_tokens: int = 0
    blocks: tuple[Hashable, ...] = ()


@dataclass
class PrefixCache:
    """A KV block cache of ``capacity`` blocks of ``block_size`` tokens with LRU eviction (module docstring).

    Example::

        c = PrefixCache(capacity=4, block_size=16)
        c.release(c.acquire((1, 2), prompt_tokens=40))
        c.acquire((1, 2, 3), prompt_tokens=50).hit_tokens      # 32: blocks 1 and 2 were cached
        c.hit_rate                                  # 32 / 90
    """

    capacity: int
    block_size: int = 16
    queries: int = 0
    hits: int = 0
    _refs: dict[Hashable, int] = field(default_factory=dict, repr=False)
    # Blocks with no reference, least recently used first: the eviction order.
    _free: OrderedDict[Hashable, None] = field(default_factory=OrderedDict, repr=False)

    def __post_init__(self) -> None:
        check_int("prefix_cache_blocks", self.capacity, 1)
        check_int("block_size", self.block_size, 1)

    def __len__(self) -> int:
        return len(self._refs)

    @property
    def hit_rate(self) -> float:
        """Cached tokens over queried tokens since start (0.0 before any query)."""
        return self.hits / self.queries if self.queries else 0.0

    def cached_prefix_blocks(self, hashes: Sequence[Hashable]) -> int:
        """How many leading blocks of ``hashes`` are cached (no side effect)."""
        n = 0
        for h in hashes:
            if h not in self._refs:
                break
            n += 1
        return n

    def acquire(self, hashes: Sequence[Hashable], *, prompt_tokens: int) -> Lease:
        """Look up and pin a request's blocks; the lease says how many prompt tokens were cached (its prefill
        saving) and which blocks it holds.

        Counts ``prompt_tokens`` queried and the hit tokens. Every full block of the prompt is then held by the
        request (reused ones pinned, new ones stored, evicting least recently used unpinned blocks when full).
        """
        hit_blocks = self.cached_prefix_blocks(hashes)
        hit_tokens = min(hit_blocks * self.block_size, max(prompt_tokens - 1, 0))
        self.queries += prompt_tokens
        self.hits += hit_tokens
        held: list[Hashable] = []
        for h in hashes:
            refs = self._refs.get(h)
            if refs is not None:
                if refs == 0:
                    del self._free[h]
                self._refs[h] = refs + 1
                held.append(h)
                continue
            if len(self._refs) >= self.capacity:
                if not self._free:
                    continue  # every block is pinned: this one is computed but not kept
                victim, _ = self._free.popitem(last=False)
                del self._refs[victim]
            self._refs[h] = 1
            held.append(h)
        return Lease(hit_tokens=hit_tokens, blocks=tuple(held))

    def release(self, lease: Lease) -> None:
        """Unpin a finished (or aborted) request's blocks, tail first, so its tail is evicted before its prefix."""
        for h in reversed(lease.blocks):
            refs = self._refs.get(h)
            if not refs:  # cannot happen while leases are released once; kept safe for a double release
                continue
            if refs == 1:
                self._refs[h] = 0
                self._free[h] = None
            else:
                self._refs[h] = refs - 1

    def reset(self) -> int:
        """Drop every unpinned block (vLLM's ``POST /reset_prefix_cache``); returns how many were dropped.

        Blocks pinned by running requests stay until those finish, then become evictable as usual. Counters are
        not reset (Prometheus counters only grow): take deltas around an experiment.
        """
        n = len(self._free)
        for h in self._free:
            del self._refs[h]
        self._free.clear()
        return n
