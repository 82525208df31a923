"""The LLM emulator's engine model: continuous batching as pure scheduling arithmetic (no sockets, no clock).

An engine *step* is what a vLLM-style engine does between two token emissions:

1. **Admit.** Waiting sequences join the running batch, oldest first, while fewer than ``max_num_seqs`` run
   (continuous batching: a sequence joins at any step, not when the whole batch ends). The rest wait.
2. **Run.** The newly admitted sequences are prefilled, which costs ``prefill_ms_per_token`` per prompt token
   and yields each one's *first* token; every sequence already running decodes one more token, which costs
   ``decode_ms_per_token × (1 + decode_slowdown_per_seq × (n_decoding − 1))``. A step that does both costs the
   sum, so a long prompt arriving stalls everyone's next token a little, as a real engine without chunked prefill
   does.
3. **Finish.** A sequence that produced its ``output_tokens`` leaves the batch, freeing its slot for the next step.

With a prefix cache (``prefix_cache_blocks`` > 0, :mod:`mlops_lb.serving.prefix_cache`, vLLM's automatic prefix
caching), an admitted sequence first looks up its prompt's leading full blocks of ``block_size`` tokens: prefill
costs only the tokens after the cached run, and the sequence pins its blocks until it leaves the batch.

So with one request alone: TTFT = prompt × prefill, then one token every ``decode_ms_per_token``; with more
running at once the gap grows linearly; past ``max_num_seqs`` requests queue and TTFT climbs with the queue.

The server (:mod:`mlops_lb.serving.llm_app`) drives this model in real time (one ``asyncio.sleep`` per step);
:func:`simulate` drives it on a virtual clock, which is how the tests check the timing rules exactly.

Example::

    p = EngineParams(max_num_seqs=2, prefill_ms_per_token=0.5, decode_ms_per_token=10)
    t = simulate([(0.0, 100, 3)], p)[0]
    t.token_times_s             # [0.05, 0.06, 0.07]: 100 × 0.5 ms of prefill, then 10 ms a token
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .._validate import check_int, check_num
from .prefix_cache import Lease, PrefixCache

__all__ = ["EngineParams", "Seq", "Step", "StepScheduler", "Timeline", "simulate"]


@dataclass(frozen=True, kw_only=True)
class EngineParams:
    """The emulated engine's constants (validated; the CLI flags of ``mlops-lb serve --llm``).

    The defaults make one emulator a small engine: 8 sequences at once, 10 ms a token alone, 13.5 ms a token with
    8 decoding; with 128-token prompts and 64-token answers it serves about 9 requests/s before requests queue.

    ``prefix_cache_blocks``: size of the prefix cache in blocks of ``block_size`` tokens (0, the default, turns it
    off, as vLLM before V1 without ``--enable-prefix-caching``; kept off so timings without a cache stay as they
    were). ``block_size`` 16 is vLLM's default block size.

    Example::

        EngineParams(max_num_seqs=16, decode_ms_per_token=20)
        EngineParams(prefix_cache_blocks=4096, block_size=16)     # 65,536 tokens of KV cache
    """

    max_num_seqs: int = 8
    prefill_ms_per_token: float = 0.1
    decode_ms_per_token: float = 10.0
    decode_slowdown_per_seq: float = 0.05
    max_model_len: int = 4096
    seed: int = 0
    prefix_cache_blocks: int = 0
    block_size: int = 16

    def __post_init__(self) -> None:
        check_int("max_num_seqs", self.max_num_seqs, 1, 100_000)
        check_num("prefill_ms_per_token", self.prefill_ms_per_token, 0, 10_000)
        check_num("decode_ms_per_token", self.decode_ms_per_token, 0, 100_000)
        check_num("decode_slowdown_per_seq", self.decode_slowdown_per_seq, 0, 1_000)
        check_int("max_model_len", self.max_model_len, 2, 10_000_000)
        check_int("seed", self.seed, 0, 2**63 - 1)
        check_int("prefix_cache_blocks", self.prefix_cache_blocks, 0, 100_000_000)
        check_int("block_size", self.block_size, 1, 1_000_000)

    def decode_s(self, n_decoding: int) -> float:
        """Seconds of one decode step with ``n_decoding`` sequences decoding (0 when none)."""
        if n_decoding <= 0:
            return 0.0
        return self.decode_ms_per_token * (1.0 + self.decode_slowdown_per_seq * (n_decoding - 1)) / 1000.0

    def prefill_s(self, prompt_tokens: int) -> float:
        """Seconds to prefill ``prompt_tokens`` tokens."""
        return self.prefill_ms_per_token * prompt_tokens / 1000.0


@dataclass(eq=False)
class Seq:
    """One request inside the engine: its sizes, its prompt's block hashes (for the prefix cache) and how far it
    has got; ``cached_tokens`` is what the prefix cache saved its prefill (set at admission)."""

    prompt_tokens: int
    output_tokens: int
    key: object = None
    generated: int = 0
    aborted: bool = False
    block_hashes: tuple[object, ...] = ()
    cached_tokens: int = 0
    lease: Lease | None = None

    @property
    def finished(self) -> bool:
        return self.aborted or self.generated >= self.output_tokens


@dataclass(frozen=True)
class Step:
    """One engine step: how long it takes and which sequences it moves (see the module docstring)."""

    duration_s: float
    prefilled: tuple[Seq, ...]
    decoded: tuple[Seq, ...]


@dataclass
class StepScheduler:
    """The waiting queue and the running batch; :meth:`plan` then :meth:`apply` is one engine step.

    ``plan()`` admits and says how long the step lasts; the caller waits that long (really or virtually), then
    ``apply(step)`` hands out one token to every sequence in the step and removes the finished ones. Sequences
    aborted (client gone) meanwhile are dropped at the next ``plan()``.

    Example::

        s = StepScheduler(EngineParams())
        s.add(Seq(prompt_tokens=10, output_tokens=2))
        step = s.plan(); ...; s.apply(step)
    """

    params: EngineParams
    waiting: deque[Seq] = field(default_factory=deque)
    running: list[Seq] = field(default_factory=list)
    cache: PrefixCache | None = None

    def __post_init__(self) -> None:
        if self.cache is None and self.params.prefix_cache_blocks > 0:
            self.cache = PrefixCache(self.params.prefix_cache_blocks, self.params.block_size)

    def _leave(self) -> None:
        """Drop finished and aborted sequences from the batch, unpinning their cache blocks."""
        keep: list[Seq] = []
        for s in self.running:
            if not s.finished:
                keep.append(s)
            elif s.lease is not None and self.cache is not None:
                self.cache.release(s.lease)
                s.lease = None
        self.running = keep

    def add(self, seq: Seq) -> None:
        """Queue a sequence; it is admitted at the next step with a free slot."""
        self.waiting.append(seq)

    @property
    def idle(self) -> bool:
        return not self.running and not any(not s.aborted for s in self.waiting)

    def plan(self) -> Step | None:
        """Admit what fits and describe the next step; None when there is nothing to do."""
        self._leave()
        decoding = tuple(self.running)
        admitted: list[Seq] = []
        while self.waiting and len(self.running) < self.params.max_num_seqs:
            seq = self.waiting.popleft()
            if seq.aborted:
                continue
            if self.cache is not None:
                seq.lease = self.cache.acquire(seq.block_hashes, prompt_tokens=seq.prompt_tokens)
                seq.cached_tokens = seq.lease.hit_tokens
            self.running.append(seq)
            admitted.append(seq)
        if not admitted and not decoding:
            return None
        p = self.params
        prefill = sum(p.prefill_s(s.prompt_tokens - s.cached_tokens) for s in admitted)
        duration = prefill + p.decode_s(len(decoding))
        return Step(duration_s=duration, prefilled=tuple(admitted), decoded=decoding)

    def apply(self, step: Step) -> list[Seq]:
        """Give each live sequence of ``step`` its token; returns those that got one, in batch order."""
        out: list[Seq] = []
        for seq in (*step.decoded, *step.prefilled):
            if seq.aborted:
                continue
            seq.generated += 1
            out.append(seq)
        self._leave()
        return out


@dataclass(frozen=True)
class Timeline:
    """When one simulated request's tokens came out (seconds on the simulation's clock)."""

    arrival_s: float
    token_times_s: list[float]

    @property
    def ttft_s(self) -> float:
        return self.token_times_s[0] - self.arrival_s

    @property
    def itl_s(self) -> list[float]:
        t = self.token_times_s
        return [b - a for a, b in itertools.pairwise(t)]


def simulate(
    requests: Iterable[tuple[float, int, int] | tuple[float, int, int, Sequence[object]]],
    params: EngineParams,
) -> list[Timeline]:
    """Run ``(arrival_s, prompt_tokens, output_tokens[, block_hashes])`` requests through the engine on a virtual
    clock.

    A request arriving during a step waits for the step to end, as in the server (admission happens between
    steps). ``block_hashes`` (see :func:`mlops_lb.serving.prefix_cache.block_hashes`) feed the prefix cache when
    ``params.prefix_cache_blocks`` > 0. Returns one :class:`Timeline` per request, in input order.

    Example::

        simulate([(0, 10, 2), (0, 10, 2)], EngineParams(max_num_seqs=1))[1].ttft_s   # waits for the first
    """
    reqs: list[tuple[float, int, int]] = []
    seqs: list[Seq] = []
    for i, r in enumerate(requests):
        reqs.append((float(r[0]), int(r[1]), int(r[2])))  # type: ignore[misc]
        hashes = tuple(r[3]) if len(r) > 3 else ()  # type: ignore[misc]
        seqs.append(Seq(prompt_tokens=int(r[1]), output_tokens=int(r[2]), key=i, block_hashes=hashes))
    order = sorted(range(len(reqs)), key=lambda i: reqs[i][0])
    times: list[list[float]] = [[] for _ in reqs]
    sched = StepScheduler(params)
    now = 0.0
    nxt = 0
    while nxt < len(order) or not sched.idle:
        while nxt < len(order) and reqs[order[nxt]][0] <= now:
            sched.add(seqs[order[nxt]])
            nxt += 1
        step = sched.plan()
        if step is None:  # idle until the next arrival
            now = max(now, reqs[order[nxt]][0])
            continue
        now += step.duration_s
        for seq in sched.apply(step):
            times[seq.key].append(now)  # type: ignore[call-overload]
    return [Timeline(arrival_s=reqs[i][0], token_times_s=times[i]) for i in range(len(reqs))]
