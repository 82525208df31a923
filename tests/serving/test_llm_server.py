"""The LLM emulator as it really runs: ``mlops-lb serve --llm`` as a subprocess on 127.0.0.1 with a random port.

The stream format checked here is OpenAI's documented chat/completions streaming
(https://platform.openai.com/docs/api-reference/chat/streaming, and .../completions/object): ``data: {json}``
events separated by a blank line, ``data: [DONE]`` last, a usage chunk with empty ``choices`` when
``stream_options.include_usage`` is set. Gauge names are vLLM's (https://docs.vllm.ai/en/latest/serving/metrics.html).
Timing is compared with the configured emulation, never with a fixed speed: gaps can only be stretched by a busy
machine, so the bounds are one-sided where exact and generous where not.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops_lb.serving import EngineParams, llm_command

# Starts `mlops-lb serve --llm` processes (the llm and llm_factory fixtures): serial phase, not the fast command.
pytestmark = pytest.mark.fleet


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LLM:
    """One emulator process (its own session, so signals reach only it)."""

    def __init__(self, tmp: Path, params: EngineParams) -> None:
        self.port = _free_port()
        self.target_id = f"llm-{self.port}"
        self.log_path = tmp / f"llm-{self.port}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                llm_command(port=self.port, target_id=self.target_id, params=params),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"emulator exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            try:
                if self.get("/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail("emulator not ready in 30 s")

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        c = self.conn()
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        c = self.conn()
        try:
            c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(r.read())
        finally:
            c.close()

    def stream(self, path: str, body: dict[str, Any]) -> tuple[dict[str, str], list[tuple[float, str]]]:
        """(headers, [(arrival time, event data)]) of one streamed answer, each event timed as it arrives."""
        c = self.conn()
        try:
            c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            r = c.getresponse()
            assert r.status == 200, r.read()
            events: list[tuple[float, str]] = []
            buf = b""
            while True:
                line = r.readline()
                if not line:
                    break
                if line in (b"\n", b"\r\n"):  # a blank line ends an event
                    if buf:
                        events.append((time.perf_counter(), buf.decode()))
                    buf = b""
                    continue
                assert line.startswith(b"data: "), line
                buf += line[len(b"data: ") :].rstrip(b"\r\n")
            return {k.lower(): v for k, v in r.getheaders()}, events
        finally:
            c.close()

    def gauges(self) -> dict[str, float]:
        from prometheus_client.parser import text_string_to_metric_families

        text = self.get("/metrics")[2].decode()
        return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode


@pytest.fixture
def llm_factory(tmp_path: Path) -> Iterator[Callable[..., LLM]]:
    started: list[LLM] = []

    def start(**kw: Any) -> LLM:
        s = LLM(tmp_path, EngineParams(**kw))
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LLM]:
    s = LLM(tmp_path_factory.mktemp("llm"), EngineParams(decode_ms_per_token=2, prefill_ms_per_token=0.01))
    yield s
    s.stop()


def _chunks(events: list[tuple[float, str]]) -> list[dict[str, Any]]:
    assert events[-1][1] == "[DONE]"
    return [json.loads(e) for _, e in events[:-1]]


class TestStreamFormat:
    def test_chat_stream_is_openai_chunks(self, llm):
        """Chat: role delta first, one content delta per token, finish_reason last, a usage chunk, [DONE]."""
        headers, events = llm.stream(
            "/v1/chat/completions",
            {
                "model": "m",
                "messages": [{"role": "user", "content": "one two three four"}],
                "max_tokens": 5,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        )
        assert headers["content-type"].startswith("text/event-stream")
        assert headers["x-target-id"] == llm.target_id
        chunks = _chunks(events)
        assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
        assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
        assert {c["model"] for c in chunks} == {"m"}
        first, tokens, usage = chunks[0], chunks[1:-1], chunks[-1]
        assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert len(tokens) == 5
        assert all(c["choices"][0]["delta"]["content"] for c in tokens)
        assert [c["choices"][0]["finish_reason"] for c in tokens] == [None] * 4 + ["length"]
        assert all(c["usage"] is None for c in chunks[:-1])  # include_usage: null on every other chunk
        assert usage["choices"] == []
        assert usage["usage"] == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}

    def test_completions_stream_without_usage(self, llm):
        """Completions: text chunks only (no role), no usage field unless asked, then [DONE]."""
        _, events = llm.stream(
            "/v1/completions", {"model": "m", "prompt": "a b", "max_tokens": 3, "stream": True}
        )
        chunks = _chunks(events)
        assert len(chunks) == 3
        assert {c["object"] for c in chunks} == {"text_completion"}
        assert all("usage" not in c and c["choices"][0]["text"] for c in chunks)
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"

    @pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
    def test_not_streamed(self, llm, path):
        """Without stream: one JSON answer of exactly max_tokens words, with usage."""
        body: dict[str, Any] = {"model": "m", "max_tokens": 7}
        body.update(
            {"messages": [{"role": "user", "content": "x y z"}]} if "chat" in path else {"prompt": "x y z"}
        )
        status, headers, out = llm.post(path, body)
        assert status == 200 and headers["x-target-id"] == llm.target_id
        choice = out["choices"][0]
        text = choice["message"]["content"] if "chat" in path else choice["text"]
        assert choice["message"]["role"] == "assistant" if "chat" in path else True
        assert len(text.split()) == 7 and choice["finish_reason"] == "length"
        assert out["usage"] == {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10}

    def test_models_health_and_errors(self, llm):
        """/v1/models lists the model; a too-long request and bad JSON are 400s; unknown paths 404; all with the id."""
        status, headers, body = llm.get("/v1/models")
        assert status == 200 and json.loads(body)["data"][0]["object"] == "model"
        status, headers, out = llm.post("/v1/completions", {"prompt": "a", "max_tokens": 5000})
        assert status == 400 and "maximum context length is 4096" in out["error"]["message"]
        status, headers, out = llm.post("/v1/chat/completions", {"messages": "hi"})
        assert status == 400 and out["error"]["param"] == "messages"
        status, headers, _ = llm.get("/nope")
        assert status == 404 and headers["x-target-id"] == llm.target_id


class TestEmulation:
    def test_token_gaps_follow_the_decode_time(self, llm_factory):
        """Alone, TTFT is at least prompt x prefill and the median gap is close to decode_ms_per_token."""
        s = llm_factory(prefill_ms_per_token=2.0, decode_ms_per_token=40.0, decode_slowdown_per_seq=0.0)
        prompt = " ".join(["w"] * 100)  # 100 tokens: 200 ms of prefill
        t0 = time.perf_counter()
        _, events = s.stream("/v1/completions", {"prompt": prompt, "max_tokens": 12, "stream": True})
        times = [t for t, _ in events[:-1]]
        assert times[0] - t0 >= 0.2 * 0.95
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert len(gaps) == 11
        # Steps are laid end to end on the server's clock: the total can only be stretched, never shortened.
        assert times[-1] - times[0] >= 11 * 0.040 * 0.95
        assert 0.75 * 0.040 <= statistics.median(gaps) <= 5 * 0.040  # a busy machine only stretches gaps

    def test_queueing_beyond_max_num_seqs_shows_in_the_gauges(self, llm_factory):
        """Five streams on a 2-sequence engine: the gauges show 2 running and 3 waiting, then 0 and 0."""
        import threading

        s = llm_factory(max_num_seqs=2, decode_ms_per_token=20.0)
        body = {"prompt": "a", "max_tokens": 60, "stream": True}  # 1.2 s a round: time to see the queue
        threads = [threading.Thread(target=s.stream, args=("/v1/completions", body)) for _ in range(5)]
        for t in threads:
            t.start()
        seen: dict[str, float] = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            seen = s.gauges()
            if seen["vllm:num_requests_running"] == 2 and seen["vllm:num_requests_waiting"] == 3:
                break
            time.sleep(0.02)
        assert seen["vllm:num_requests_running"] == 2 and seen["vllm:num_requests_waiting"] == 3, seen
        for t in threads:
            t.join(60)
        after = s.gauges()
        assert after["vllm:num_requests_running"] == 0 and after["vllm:num_requests_waiting"] == 0
        assert after["vllm:generation_tokens_total"] == 300 and after["vllm:request_success_total"] == 5

    def test_a_client_that_goes_away_frees_its_slot(self, llm_factory):
        """Closing the connection mid-stream ends that sequence: the next request gets the only slot."""
        s = llm_factory(max_num_seqs=1, decode_ms_per_token=20.0)
        c = s.conn()
        c.request("POST", "/v1/completions", json.dumps({"prompt": "a", "max_tokens": 4000, "stream": True}))
        r = c.getresponse()
        r.readline()  # the first token is out: the sequence is running
        c.close()
        status, _, out = s.post("/v1/completions", {"prompt": "a", "max_tokens": 2})
        assert status == 200 and out["usage"]["completion_tokens"] == 2
        assert s.gauges()["vllm:num_requests_running"] == 0

    def test_sigterm_exits_cleanly(self, llm_factory):
        """SIGTERM stops the emulator with exit status 0."""
        assert llm_factory().stop() == 0


def test_cli_help_documents_the_defaults():
    """`mlops-lb serve --help` lists the emulator's flags with their defaults."""
    out = subprocess.run(
        [sys.executable, "-m", "mlops_lb", "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for flag in ("--llm", "--max-num-seqs", "--prefill-ms-per-token", "--decode-ms-per-token",
                 "--decode-slowdown-per-seq", "--max-model-len", "--seed"):  # fmt: skip
        assert flag in out
