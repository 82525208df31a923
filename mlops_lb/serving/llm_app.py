"""The LLM emulator's ASGI app: an OpenAI-compatible server whose tokens come from an emulated engine.

Routes (the subset of the OpenAI API that vLLM's server also offers, same shapes):

* ``GET /v1/models``: the one served model.
* ``POST /v1/completions`` (``prompt``: a string or a list of one string) and ``POST /v1/chat/completions``
  (``messages``: ``[{"role", "content"}]``, content a string or a list of ``{"type": "text", "text"}`` parts),
  with ``max_tokens`` (chat also ``max_completion_tokens``; default 16) and ``stream``. Streaming answers are
  Server-Sent Events: for chat a first chunk whose delta carries only the role, then one chunk per token, the
  last with ``finish_reason``; with ``stream_options: {"include_usage": true}`` every chunk has ``"usage": null``
  and one more chunk with empty ``choices`` carries the usage; then ``data: [DONE]``. That is OpenAI's documented
  stream (https://platform.openai.com/docs/api-reference/chat/streaming: "choices … can also be empty for the last
  chunk if you set stream_options: {"include_usage": true}"), with the finish reason on the last token as vLLM's
  ``serving_chat.py`` sends it.
* ``GET /health``: 200 (empty body, as vLLM) unless switched to failing (SIGUSR1 under ``serve``), then 503.
* ``GET /metrics``: Prometheus text with vLLM's scheduler gauges ``vllm:num_requests_running`` and
  ``vllm:num_requests_waiting`` (names from https://docs.vllm.ai/en/latest/serving/metrics.html), the token
  counters ``vllm:prompt_tokens_total`` and ``vllm:generation_tokens_total`` and ``vllm:request_success_total``,
  all labelled ``model_name``; and the prefix cache's counters ``vllm:prefix_cache_queries_total`` and
  ``vllm:prefix_cache_hits_total`` (prompt tokens looked up / found cached: vLLM declares
  ``vllm:prefix_cache_queries`` and ``vllm:prefix_cache_hits`` in vllm/v1/metrics/loggers.py and prometheus_client
  adds ``_total`` to a counter's name on the wire), 0 while the cache is off.
* ``POST /reset_prefix_cache``: empty the prefix cache (vLLM's route of the same name, which vLLM serves only with
  ``VLLM_SERVER_DEV_MODE=1``; the emulator always does); 200. Between the arms of an A/B.

Every response carries ``X-Target-Id``. Tokens are whitespace-separated words: a prompt of *n* words is *n* prompt
tokens, and every answer is exactly ``max_tokens`` tokens (``finish_reason: "length"``, as vLLM with
``ignore_eos``), so a load test controls both lengths. Any ``model`` name of at most 256 characters is accepted and echoed back (a longer one is a 400). A prompt
plus ``max_tokens`` over ``max_model_len`` is a 400, as in vLLM. A client that goes away frees its slot at the next
engine step.

Example::

    app = create_llm_app(EngineParams(max_num_seqs=4), target_id="llm-1")
    uvicorn.run(app, port=8000)          # or mlops_lb.serving.serve_llm(port=8000)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._guard import respond
from .llm_engine import EngineParams, Seq, StepScheduler
from .prefix_cache import block_hashes

__all__ = ["DEFAULT_MAX_TOKENS", "SERVED_MODEL_NAME", "LLMServer", "count_tokens", "create_llm_app"]

log = logging.getLogger(__name__)

SERVED_MODEL_NAME = "mlops-lb-llm-emulator"
DEFAULT_MAX_TOKENS = 16  # OpenAI's documented default for /v1/completions; used for chat too
MAX_BODY_BYTES = 4_000_000

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Far above real names ("meta-llama/Llama-3.1-8B-Instruct" is 32), far below what multiplies a response.
MAX_MODEL_NAME_CHARS = 256
# Words the emulator "generates" (seeded): short and ASCII, so every token is one JSON-safe word.
_VOCAB = (
    "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "on", "be", "by", "at",
    "this", "are", "from", "or", "an", "have", "not", "which", "one", "all", "can", "more", "will", "their",
    "model", "token", "fleet", "load", "batch", "queue", "target", "request", "latency", "stream", "serve",
    "scale", "engine", "prefill", "decode", "cache", "time", "first", "next", "each", "step", "rate",
)  # fmt: skip


def count_tokens(text: str) -> int:
    """The emulator's tokenizer: one token per whitespace-separated word (at least 1 for any prompt)."""
    return max(1, len(text.split()))


class _BadRequest(Exception):
    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


class LLMServer:
    """The emulator's state: the engine (scheduler + stepping task), counters and the health switch."""

    def __init__(self, params: EngineParams, *, target_id: str, served_model_name: str = SERVED_MODEL_NAME):
        self.params = params
        self.target_id = target_id
        self.model_name = served_model_name
        self.scheduler = StepScheduler(params)
        self.health_failing = False
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.success_total = 0
        self._requests = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.header = (b"x-target-id", target_id.encode("latin-1", "replace"))

    def toggle_health_failing(self) -> bool:
        """Flip the "health check failing" switch; returns the new value."""
        self.health_failing = not self.health_failing
        log.warning("health check switched to %s", "failing" if self.health_failing else "passing")
        return self.health_failing

    # ---------------------------------------------------------------- the engine loop
    def submit(self, seq: Seq) -> None:
        self.scheduler.add(seq)
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="llm-engine")
        assert self._wake is not None
        self._wake.set()

    async def _run(self) -> None:
        """One iteration per engine step; sleeps on an event while idle (no polling)."""
        loop = asyncio.get_running_loop()
        wake = self._wake
        assert wake is not None
        deadline = loop.time()
        while True:
            step = self.scheduler.plan()
            if step is None:
                wake.clear()
                await wake.wait()
                deadline = loop.time()
                continue
            # Steps are laid end to end on the clock so the per-step overhead does not add up; a step that starts
            # late (a busy CPU) starts from now instead of bursting to catch up.
            # uvloop's timers round up to whole milliseconds, so each sleep ends a little late: chaining deadlines
            # keeps the average step exact. Only a wake-up late by more than a step (a stalled CPU) restarts the
            # chain from now, so a stall never turns into a burst of tokens.
            now = loop.time()
            deadline = (deadline if now - deadline < step.duration_s else now) + step.duration_s
            delay = deadline - loop.time()
            await asyncio.sleep(delay if delay > 0 else 0)
            for seq in self.scheduler.apply(step):
                self.generation_tokens_total += 1
                seq.key.put_nowait(seq.generated)  # type: ignore[attr-defined]

    def next_rng(self) -> random.Random:
        self._requests += 1
        return random.Random(self.params.seed * 1_000_003 + self._requests)

    # ---------------------------------------------------------------- metrics
    def metrics_text(self) -> bytes:
        name = self.model_name.replace("\\", "\\\\").replace('"', '\\"')
        label = f'{{model_name="{name}"}}'
        running = len(self.scheduler.running)
        waiting = sum(1 for s in self.scheduler.waiting if not s.aborted)
        cache = self.scheduler.cache
        lines = [
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{label} {running}",
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{label} {waiting}",
            "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
            "# TYPE vllm:prompt_tokens_total counter",
            f"vllm:prompt_tokens_total{label} {self.prompt_tokens_total}",
            "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{label} {self.generation_tokens_total}",
            "# HELP vllm:request_success_total Count of successfully processed requests.",
            "# TYPE vllm:request_success_total counter",
            f"vllm:request_success_total{label} {self.success_total}",
            "# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.",
            "# TYPE vllm:prefix_cache_queries_total counter",
            f"vllm:prefix_cache_queries_total{label} {cache.queries if cache is not None else 0}",
            "# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.",
            "# TYPE vllm:prefix_cache_hits_total counter",
            f"vllm:prefix_cache_hits_total{label} {cache.hits if cache is not None else 0}",
        ]
        return ("\n".join(lines) + "\n").encode()


# --------------------------------------------------------------------------- request parsing
def _parse(
    body: bytes, chat: bool, params: EngineParams
) -> tuple[int, int, bool, bool, str | None, list[str]]:
    """(prompt_tokens, max_tokens, stream, include_usage, model, prompt words) of a request body, or _BadRequest.

    The words (the emulator's tokens, every message's in order) are collected only when the prefix cache is on.
    """
    keep = params.prefix_cache_blocks > 0
    tokens: list[str] = []
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise _BadRequest(400, f"body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _BadRequest(400, "body must be a JSON object")
    if chat:
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _BadRequest(400, "messages must be a non-empty list of {role, content}", "messages")
        words = 0
        for i, m in enumerate(messages):
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, list):
                content = " ".join(
                    str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
                )
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(content, str):
                raise _BadRequest(
                    400, f"messages[{i}] must be an object with a role and a text content", "messages"
                )
            split = content.split()
            words += len(split)
            if keep:
                tokens += split
        prompt_tokens = max(1, words)
        max_tokens = data.get("max_completion_tokens", data.get("max_tokens"))
    else:
        prompt = data.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise _BadRequest(400, "prompt must be a string (or a list of one string)", "prompt")
        prompt_tokens = count_tokens(prompt)
        if keep:
            tokens = prompt.split()
        max_tokens = data.get("max_tokens")
    if max_tokens is None:
        max_tokens = DEFAULT_MAX_TOKENS
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise _BadRequest(400, f"max_tokens must be an integer >= 1 (got {_brief(max_tokens)})", "max_tokens")
    # Range first, format after: Python refuses to print an int of more than 4,300 digits (ValueError, a 500).
    # A sane number over the context length gets vLLM's own message below.
    if max_tokens > params.max_model_len and max_tokens.bit_length() > 64:
        raise _BadRequest(
            400,
            f"max_tokens must be at most this model's maximum context length, {params.max_model_len} "
            f"(got {_brief(max_tokens)})",
            "max_tokens",
        )
    if data.get("n", 1) != 1:
        raise _BadRequest(400, "only n = 1 is supported by the emulator", "n")
    if prompt_tokens + max_tokens > params.max_model_len:
        raise _BadRequest(
            400,
            f"This model's maximum context length is {params.max_model_len} tokens. However, you requested "
            f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in the "
            "completion). Please reduce the length of the messages or completion.",
        )
    stream = data.get("stream", False) is True
    opts = data.get("stream_options")
    include_usage = stream and isinstance(opts, dict) and opts.get("include_usage") is True
    model = data.get("model")
    # The name is echoed in every chunk: an unbounded one multiplied the response (3.9 MB in each of 64 chunks).
    if isinstance(model, str) and len(model) > MAX_MODEL_NAME_CHARS:
        raise _BadRequest(
            400, f"model must be at most {MAX_MODEL_NAME_CHARS} characters (got {len(model)})", "model"
        )
    return prompt_tokens, max_tokens, stream, include_usage, model if isinstance(model, str) else None, tokens


def _brief(value: object) -> str:
    """A request value for an error message: short, and never an int too long to print."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --------------------------------------------------------------------------- the app
def create_llm_app(
    params: EngineParams | None = None,
    *,
    target_id: str = "local",
    served_model_name: str = SERVED_MODEL_NAME,
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The emulator as a plain ASGI app (no framework: the server's own cost stays far below the emulated one).

    Example::

        app = create_llm_app(EngineParams(decode_ms_per_token=5), target_id="llm-1")
        app.state.toggle_health_failing()
    """
    server = LLMServer(params or EngineParams(), target_id=target_id, served_model_name=served_model_name)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        try:
            if path in ("/v1/completions", "/v1/chat/completions"):
                if method != "POST":
                    raise _BadRequest(405, "Method Not Allowed")
                await _generate(server, scope, receive, send, chat=path == "/v1/chat/completions")
            elif path == "/health" and method in ("GET", "HEAD"):
                await _send(server, send, 503 if server.health_failing else 200, b"", b"text/plain")
            elif path == "/metrics" and method == "GET":
                await _send(
                    server, send, 200, server.metrics_text(), b"text/plain; version=0.0.4; charset=utf-8"
                )
            elif path == "/reset_prefix_cache" and method == "POST":
                cache = server.scheduler.cache
                dropped = cache.reset() if cache is not None else 0
                log.info("prefix cache reset: %d blocks dropped", dropped)
                await _send(server, send, 200, b"", b"text/plain")
            elif path == "/v1/models" and method == "GET":
                card = {
                    "id": server.model_name,
                    "object": "model",
                    "created": int(time.time()),
                    "owned_by": "mlops-lb",
                    "max_model_len": server.params.max_model_len,
                }
                await _send(server, send, 200, _dumps({"object": "list", "data": [card]}))
            else:
                raise _BadRequest(404, f"{method} {path} not found")
        except _BadRequest as exc:
            await _send(server, send, exc.status, _error(exc))

    app.state = server  # type: ignore[attr-defined]
    return app


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _error(exc: _BadRequest) -> bytes:
    kind = (
        "invalid_request_error" if exc.status == 400 else "not_found_error" if exc.status == 404 else "error"
    )
    return _dumps({"error": {"message": exc.message, "type": kind, "param": exc.param, "code": exc.status}})


async def _send(
    server: LLMServer, send: Send, status: int, body: bytes, content_type: bytes = b"application/json"
) -> None:
    await respond(send, status, body, server.header, content_type=content_type)


async def _read_body(scope: Scope, receive: Receive) -> bytes | None:
    """The whole body, a 413 past MAX_BODY_BYTES (read to the end first, so the client can read the answer)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        size += len(message.get("body", b""))
        if size <= MAX_BODY_BYTES:
            chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    if size > MAX_BODY_BYTES:
        raise _BadRequest(413, f"body must be at most {MAX_BODY_BYTES} bytes")
    return b"".join(chunks)


async def _generate(server: LLMServer, scope: Scope, receive: Receive, send: Send, *, chat: bool) -> None:
    body = await _read_body(scope, receive)
    if body is None:
        return
    prompt_tokens, max_tokens, stream, include_usage, model, prompt_words = _parse(body, chat, server.params)
    model = model or server.model_name
    tokens: asyncio.Queue[int] = asyncio.Queue()
    hashes = block_hashes(prompt_words, server.params.block_size) if prompt_words else ()
    seq = Seq(prompt_tokens=prompt_tokens, output_tokens=max_tokens, key=tokens, block_hashes=hashes)
    rng = server.next_rng()
    server.prompt_tokens_total += prompt_tokens
    server.submit(seq)

    async def watch() -> None:  # the client going away frees the slot at the next step
        while (await receive())["type"] != "http.disconnect":
            pass
        seq.aborted = True
        tokens.put_nowait(-1)

    watcher = asyncio.get_running_loop().create_task(watch())
    rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
    created = int(time.time())
    obj = "chat.completion.chunk" if chat else "text_completion"
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": max_tokens,
        "total_tokens": prompt_tokens + max_tokens,
    }
    try:
        if not stream:
            words: list[str] = []
            while len(words) < max_tokens:
                if await tokens.get() < 0:
                    return
                words.append(rng.choice(_VOCAB))
            text = " ".join(words)
            choice: dict[str, Any] = (
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": "length",
                }
                if chat
                else {"index": 0, "text": text, "logprobs": None, "finish_reason": "length"}
            )
            out = {
                "id": rid,
                "object": "chat.completion" if chat else "text_completion",
                "created": created,
                "model": model,
                "choices": [choice],
                "usage": usage,
            }
            server.success_total += 1
            await _send(server, send, 200, _dumps(out))
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    server.header,
                ],
            }
        )
        extra: dict[str, Any] = {"usage": None} if include_usage else {}

        def event(choices: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
            return {
                "type": "http.response.body",
                "body": b"data: "
                + _dumps(
                    {
                        "id": rid,
                        "object": obj,
                        "created": created,
                        "model": model,
                        "choices": choices,
                        **extra,
                        **more,
                    }
                )
                + b"\n\n",
                "more_body": True,
            }

        if chat:  # the role comes first, before any token (it is no token: TTFT does not count it)
            await send(
                event(
                    [
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": ""},
                            "logprobs": None,
                            "finish_reason": None,
                        }
                    ]
                )
            )
        # A token event is the same JSON each time but for the word and the finish reason: cut the template once
        # at two markers, so each token costs two small joins rather than a json.dumps of the whole chunk.
        mark_w, mark_f = "\x00w\x00", "\x00f\x00"
        choice = (
            {"index": 0, "delta": {"content": mark_w}, "logprobs": None, "finish_reason": mark_f}
            if chat
            else {"index": 0, "text": mark_w, "logprobs": None, "finish_reason": mark_f}
        )
        template = event([choice])["body"]
        pre, rest = template.split(_dumps(mark_w), 1)
        mid, post = rest.split(_dumps(mark_f), 1)
        for n in range(1, max_tokens + 1):
            if await tokens.get() < 0:
                return
            word = rng.choice(_VOCAB) + (" " if n < max_tokens else "")
            finish = b'"length"' if n == max_tokens else b"null"
            body = b"".join((pre, _dumps(word), mid, finish, post))
            await send({"type": "http.response.body", "body": body, "more_body": True})
        if include_usage:
            extra = {}
            await send(event([], usage=usage))
        server.success_total += 1
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
    except OSError:  # the socket went away mid-answer
        return
    finally:
        seq.aborted = seq.aborted or not seq.finished
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher
