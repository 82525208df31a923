"""The LLM emulator's prefix cache, modelled on vLLM's automatic prefix caching.

Rules pinned here and their source (https://docs.vllm.ai/en/latest/design/prefix_caching/ and the RFC
https://github.com/vllm-project/vllm/issues/2614):

| rule | vLLM's words |
|---|---|
| a block's hash covers its tokens and every token before it | "hash each kv-cache block by the tokens in the block and the tokens in the prefix before the block" |
| only full blocks are cached | the design doc: "only full blocks are cached" |
| evict unreferenced blocks, least recently used first | RFC: "Only evict the blocks with ref count == 0 … Prefer to free older blocks following LRU" |
| a finished request's tail is evicted before its head | the design doc: blocks are freed "in reverse order so that the tail blocks are evicted first" |
| the last prompt token is always computed | the KV cache manager caps a hit at ``num_tokens - 1`` (it needs the last token's logits) |
| queries and hits are counted in tokens | vllm/v1/metrics/loggers.py: "Prefix cache queries, in terms of number of queried tokens" / "hits, in terms of number of cached tokens" |
| the counters are exposed with ``_total`` | prometheus_client appends ``_total`` to a Counter's name on the wire |
| ``POST /reset_prefix_cache`` empties the cache | vLLM's server route of that name (dev mode) |
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from mlops_lb.errors import SpecError
from mlops_lb.serving.llm_app import create_llm_app
from mlops_lb.serving.llm_engine import EngineParams, simulate
from mlops_lb.serving.prefix_cache import PrefixCache, block_hashes

W = [f"w{i}" for i in range(4096)]  # distinct words: blocks differ unless their words are the same


class TestBlockHashes:
    def test_only_full_blocks_and_chained(self) -> None:
        """40 tokens at 16 a block are 2 hashes; a block equal in words but after a different prefix differs."""
        assert len(block_hashes(W[:40], 16)) == 2
        a = block_hashes(W[:16] + W[100:116], 16)
        b = block_hashes(W[16:32] + W[100:116], 16)
        assert a[1] != b[1], "the second block's hash must cover the first block"
        assert block_hashes(W[:32], 16) == block_hashes(W[:32] + W[999:1003], 16)


class TestPrefixCache:
    def test_hit_accounting_in_tokens_and_last_token_always_computed(self) -> None:
        """A second request with the same 3-block prompt hits 47 of its 48 tokens: the last one is recomputed."""
        c = PrefixCache(capacity=10, block_size=16)
        h = block_hashes(W[:48], 16)
        assert c.acquire(h, prompt_tokens=48).hit_tokens == 0
        assert c.acquire(h, prompt_tokens=48).hit_tokens == 47
        assert (c.queries, c.hits) == (96, 47)
        assert c.hit_rate == pytest.approx(47 / 96)
        # a longer prompt sharing the 3 blocks: all 48 tokens hit, only the new part is computed
        longer = block_hashes(W[:48] + W[500:520], 16)
        assert c.acquire(longer, prompt_tokens=68).hit_tokens == 48

    def test_lru_evicts_unpinned_blocks_oldest_first(self) -> None:
        """Capacity 4: A (2 blocks) and B (2 blocks) fill it; C needs 2 more and evicts A, used longest ago."""
        c = PrefixCache(capacity=4, block_size=16)
        a, b, cc = (block_hashes(W[i : i + 32], 16) for i in (0, 1000, 2000))
        for h in (a, b):
            c.release(c.acquire(h, prompt_tokens=33))
        c.release(c.acquire(b, prompt_tokens=33))  # B is now the most recently used
        c.release(c.acquire(cc, prompt_tokens=33))
        assert (
            c.cached_prefix_blocks(a) == 0
            and c.cached_prefix_blocks(b) == 2
            and c.cached_prefix_blocks(cc) == 2
        )

    def test_pinned_blocks_are_not_evicted(self) -> None:
        """A running request's blocks stay; a new request that does not fit is served but its blocks not kept."""
        c = PrefixCache(capacity=2, block_size=16)
        a = block_hashes(W[:32], 16)
        lease = c.acquire(a, prompt_tokens=33)  # still running: pinned
        b = block_hashes(W[1000:1032], 16)
        c.release(c.acquire(b, prompt_tokens=33))
        assert c.cached_prefix_blocks(a) == 2 and c.cached_prefix_blocks(b) == 0
        c.release(lease)
        c.release(c.acquire(b, prompt_tokens=33))
        assert c.cached_prefix_blocks(b) == 2 and c.cached_prefix_blocks(a) == 0

    def test_tail_is_evicted_before_head(self) -> None:
        """After one request of 3 blocks finishes, filling one slot evicts its last block, keeping the prefix."""
        c = PrefixCache(capacity=3, block_size=16)
        h = block_hashes(W[:48], 16)
        c.release(c.acquire(h, prompt_tokens=49))
        c.release(c.acquire(block_hashes(W[2000:2016], 16), prompt_tokens=17))
        assert c.cached_prefix_blocks(h) == 2

    def test_reset_drops_unpinned_blocks_keeps_counters(self) -> None:
        """reset() empties the cache (a pinned block stays until released); counters only grow."""
        c = PrefixCache(capacity=8, block_size=16)
        h = block_hashes(W[:32], 16)
        c.release(c.acquire(h, prompt_tokens=33))
        assert c.reset() == 2 and len(c) == 0
        assert c.acquire(h, prompt_tokens=33).hit_tokens == 0 and c.queries == 66

    def test_size_is_validated(self) -> None:
        with pytest.raises(SpecError, match="prefix_cache_blocks"):
            PrefixCache(capacity=0)
        with pytest.raises(SpecError, match="block_size"):
            EngineParams(block_size=0)


P: dict[str, float] = {"prefill_ms_per_token": 1.0, "decode_ms_per_token": 10.0}


class TestPrefillCost:
    def test_prefill_costs_only_uncached_tokens(self) -> None:
        """1,000-token prompt at 1 ms a token: 1 s cold; the repeat prefills 8 tokens (62 full blocks cached)."""
        h = block_hashes(W[:1000], 16)
        cold, warm = simulate(
            [(0.0, 1000, 1, h), (5.0, 1000, 1, h)], EngineParams(prefix_cache_blocks=100, **P)
        )
        assert cold.ttft_s == pytest.approx(1.0) and warm.ttft_s == pytest.approx(0.008)

    def test_without_a_cache_every_prefill_is_whole(self) -> None:
        """The same two requests with the cache off (the default) both take the full second: no hidden reuse."""
        h = block_hashes(W[:1000], 16)
        t = simulate([(0.0, 1000, 1, h), (5.0, 1000, 1, h)], EngineParams(**P))
        assert [x.ttft_s for x in t] == pytest.approx([1.0, 1.0])

    def test_a_cache_too_small_forgets(self) -> None:
        """Capacity 10 blocks cannot hold 62: the repeat finds only what survived (the first 10 blocks)."""
        h = block_hashes(W[:1000], 16)
        warm = simulate([(0.0, 1000, 1, h), (5.0, 1000, 1, h)], EngineParams(prefix_cache_blocks=10, **P))[1]
        assert warm.ttft_s == pytest.approx((1000 - 160) / 1000)


# --------------------------------------------------------------------------- the app, in process (no sockets)
async def _call(app: Any, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []
    got_body = False

    async def receive() -> dict[str, Any]:
        nonlocal got_body
        if not got_body:
            got_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": []}
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def _counters(text: bytes) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {s.name: s.value for f in text_string_to_metric_families(text.decode()) for s in f.samples}


def test_app_exposes_vllm_counter_names_and_resets() -> None:
    """Two equal chat prompts: /metrics shows vLLM's queries and hits (tokens); after POST /reset_prefix_cache
    the same prompt misses again."""
    app = create_llm_app(EngineParams(prefix_cache_blocks=64, decode_ms_per_token=0, prefill_ms_per_token=0))
    body = json.dumps(
        {"model": "m", "messages": [{"role": "user", "content": " ".join(W[:40])}], "max_tokens": 1}
    ).encode()

    async def scenario() -> list[dict[str, float]]:
        seen = []
        for step in ("cold", "warm", "reset", "after"):
            if step == "reset":
                status, _ = await _call(app, "POST", "/reset_prefix_cache")
                assert status == 200
            else:
                status, _ = await _call(app, "POST", "/v1/chat/completions", body)
                assert status == 200
            seen.append(_counters((await _call(app, "GET", "/metrics"))[1]))
        return seen

    cold, warm, flushed, after = asyncio.run(scenario())
    # prometheus_client's parser reports a counter's samples under the name with _total, as vLLM's server shows
    q, h = "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total"
    assert (cold[q], cold[h]) == (40, 0)
    assert (warm[q], warm[h]) == (80, 32)  # 2 full blocks of 16
    assert (flushed[q], flushed[h]) == (80, 32)  # an empty cache still reports its counters (they only grow)
    assert (after[q], after[h]) == (120, 32)  # flushed: a miss again, and the counters kept counting


def test_counters_are_zero_when_the_cache_is_off() -> None:
    """The default emulator (no cache) still exposes the counters, at 0, and the reset route answers."""
    app = create_llm_app(EngineParams())

    async def scenario() -> tuple[int, bytes]:
        assert (await _call(app, "POST", "/reset_prefix_cache"))[0] == 200
        return await _call(app, "GET", "/metrics")

    status, text = asyncio.run(scenario())
    got = _counters(text)
    assert (
        status == 200
        and got["vllm:prefix_cache_queries_total"] == 0
        and got["vllm:prefix_cache_hits_total"] == 0
    )
