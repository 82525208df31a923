"""Request builders: OpenAI chat/completions bodies with seeded lengths, datasets, traces with sizes, JSONL bodies."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_lb import load
from mlops_lb.errors import SpecError
from mlops_lb.serving import EngineParams, llm_command


def _words(body: bytes, chat: bool = True) -> int:
    d = json.loads(body)
    text = d["messages"][-1]["content"] if chat else d["prompt"]
    return len(text.split())


class TestLengths:
    def test_fixed_lengths_and_stream_options(self):
        """A fixed prompt length is that many words; streaming bodies ask for the usage chunk."""
        bodies = load.openai_chat(model="m", prompt_tokens=12, max_tokens=7, n=5)
        assert len(bodies) == 5
        for b in bodies:
            d = json.loads(b)
            assert d["model"] == "m" and d["stream"] is True
            assert d["stream_options"] == {"include_usage": True}
            assert d["max_tokens"] == 7 and _words(b) == 12
            assert d["messages"] == [{"role": "user", "content": d["messages"][0]["content"]}]

    def test_not_streaming_has_no_stream_options(self):
        """stream=False bodies say so and carry no stream_options (OpenAI rejects it without stream)."""
        d = json.loads(load.openai_completions(model="m", stream=False, n=1)[0])
        assert d["stream"] is False and "stream_options" not in d and isinstance(d["prompt"], str)

    def test_seeded_distributions(self):
        """(lo, hi), an empirical list and lognormal draws are seeded: same seed, same bodies; bounds hold."""
        kw = {"model": "m", "prompt_tokens": (5, 9), "max_tokens": {"lognormal": (50, 0.5)}, "n": 300}
        a, b = load.openai_chat(seed=3, **kw), load.openai_chat(seed=3, **kw)
        assert a == b and a != load.openai_chat(seed=4, **kw)
        assert {_words(x) for x in a} == set(range(5, 10))
        outs = [json.loads(x)["max_tokens"] for x in a]
        assert min(outs) >= 1 and 35 < sorted(outs)[150] < 70  # median near 50
        emp = load.openai_chat(model="m", prompt_tokens=[3, 30], n=200)
        assert {_words(x) for x in emp} == {3, 30}

    def test_system_prompt_and_extra_fields(self):
        """system goes first; extra keys are added to every body."""
        d = json.loads(load.openai_chat(model="m", system="be brief", extra={"temperature": 0}, n=1)[0])
        assert d["messages"][0] == {"role": "system", "content": "be brief"} and d["temperature"] == 0

    @pytest.mark.parametrize(
        ("kw", "text"),
        [
            ({"prompt_tokens": 0}, "prompt_tokens must be between 1 and 1000000 (got 0)"),
            ({"max_tokens": (10, 2)}, r"max_tokens\[1\] must be between 10 and 1000000 \(got 2\)"),
            ({"max_tokens": {"gamma": (1, 2)}}, "must be {'normal': (mean, sd)}"),
            ({"prompt_tokens": "long"}, "prompt_tokens must be an int, a (lo, hi) tuple"),
            ({"n": 0}, r"n must be between 1 and 10000000 \(got 0\)"),
            ({"model": ""}, "model must not be empty"),
            ({"prompts": 5}, "prompts must be a list of texts or a JSONL/JSON dataset path"),
        ],
    )
    def test_bad_input_names_the_field(self, kw, text):
        """Each bad argument is a SpecError naming the field."""
        kw = {"model": "m", **kw}
        with pytest.raises(SpecError, match=re.escape(text) if "\\" not in text else text):
            load.openai_chat(**kw)


class TestDatasets:
    def test_texts_are_cycled(self):
        """A list of prompts is used in order, n bodies in all."""
        bodies = load.openai_completions(model="m", prompts=["a b", "c"], n=3, max_tokens=2)
        assert [json.loads(b)["prompt"] for b in bodies] == ["a b", "c", "a b"]

    def test_sharegpt_json_sets_output_lengths(self, tmp_path):
        """ShareGPT: the first human turn is the prompt, the reply's length the output; turnless records skipped."""
        data = [
            {
                "id": "1",
                "conversations": [{"from": "human", "value": "hi there"}, {"from": "gpt", "value": "a b c"}],
            },
            {"id": "2", "conversations": [{"from": "gpt", "value": "lonely"}]},
            {"id": "3", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "x y"}]},
        ]
        path = tmp_path / "sharegpt.json"
        path.write_text(json.dumps(data))
        bodies = [json.loads(b) for b in load.openai_chat(model="m", prompts=path)]
        assert [(b["messages"][0]["content"], b["max_tokens"]) for b in bodies] == [("hi there", 3), ("q", 2)]
        forced = load.openai_chat(model="m", prompts=str(path), max_tokens=9)
        assert {json.loads(b)["max_tokens"] for b in forced} == {9}

    def test_jsonl_prompts_with_output_tokens(self, tmp_path):
        """JSONL records with prompt (or messages) and output_tokens."""
        path = tmp_path / "p.jsonl"
        path.write_text(
            '{"prompt": "one two", "output_tokens": 4}\n\n'
            '{"messages": [{"role": "user", "content": "three"}], "output_tokens": 6}\n'
        )
        bodies = [json.loads(b) for b in load.openai_completions(model="m", prompts=path)]
        assert [(b["prompt"], b["max_tokens"]) for b in bodies] == [("one two", 4), ("three", 6)]

    def test_bad_dataset_line_is_named(self, tmp_path):
        """A line that is not JSON names the file and line."""
        path = tmp_path / "bad.jsonl"
        path.write_text('{"prompt": "ok"}\nnot json\n')
        with pytest.raises(SpecError, match=r"bad\.jsonl line 2 is not JSON"):
            load.openai_chat(model="m", prompts=path)


class TestPayloadsFromJsonl:
    def test_bodies_as_written(self, tmp_path):
        """Each non-blank line is one body, sent as written."""
        path = tmp_path / "b.jsonl"
        path.write_text('{"rows": [[1, 2]]}\n\n{"rows": [[3, 4]]}\r\n')
        assert load.payloads_from_jsonl(path) == [b'{"rows": [[1, 2]]}', b'{"rows": [[3, 4]]}']

    def test_errors(self, tmp_path):
        """A missing file, a non-JSON line and an empty file are SpecErrors naming the problem."""
        with pytest.raises(SpecError, match="cannot read"):
            load.payloads_from_jsonl(tmp_path / "none.jsonl")
        (tmp_path / "x.jsonl").write_text("{}\n{oops\n")
        with pytest.raises(SpecError, match="line 2 is not JSON"):
            load.payloads_from_jsonl(tmp_path / "x.jsonl")
        (tmp_path / "e.jsonl").write_text("\n\n")
        with pytest.raises(SpecError, match="has no request bodies"):
            load.payloads_from_jsonl(tmp_path / "e.jsonl")


class TestTraceSizes:
    def test_csv_trace_with_sizes_sorts_them_with_the_times(self, tmp_path):
        """A recorded trace's size columns follow its timestamps when they are sorted."""
        path = tmp_path / "t.csv"
        path.write_text("timestamp,input_length,output_length\n10.5,30,3\n10.0,20,2\n11.0,40,4\n")
        t = load.trace(path, sort=True)
        assert t.offsets == (0.0, 0.5, 1.0)
        assert t.prompt_tokens == (20, 30, 40) and t.output_tokens == (2, 3, 4)
        bodies = [json.loads(b) for b in load.openai_completions(model="m", profile=t)]
        assert [(len(b["prompt"].split()), b["max_tokens"]) for b in bodies] == [(20, 2), (30, 3), (40, 4)]

    def test_sizes_round_trip_and_validate(self):
        """Sizes survive to_dict/from_dict; a size list of the wrong length is refused."""
        from mlops_lb.load.profiles import profile_from_dict

        t = load.trace([0, 1], prompt_tokens=[5, 6], output_tokens=[7, 8])
        assert profile_from_dict(t.to_dict()) == t
        with pytest.raises(SpecError, match="output_tokens must have one size per timestamp"):
            load.trace([0, 1], prompt_tokens=[5, 6], output_tokens=[7])
        with pytest.raises(SpecError, match="prompts must be left out"):
            load.openai_chat(model="m", profile=t, prompts=["x"])


# --------------------------------------------------------------------------- against the LLM emulator
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[int]:
    port = _free_port()
    cmd = llm_command(port=port, target_id="e1", params=EngineParams(max_num_seqs=64, decode_ms_per_token=2))
    with (tmp_path / "llm.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail((tmp_path / "llm.log").read_text())
                time.sleep(0.05)
            finally:
                c.close()
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.mark.fleet
def test_replayed_trace_sends_its_recorded_sizes(emulator):
    """run_load of a trace with sizes: the emulator counts exactly the trace's prompt and output tokens."""
    from prometheus_client.parser import text_string_to_metric_families

    n = 30
    t = load.trace(
        [i * 0.02 for i in range(n)],
        prompt_tokens=[10 + i for i in range(n)],
        output_tokens=[1 + i % 5 for i in range(n)],
    )
    url = f"http://127.0.0.1:{emulator}/v1/chat/completions"
    result = load.run_load(
        url, t, payloads=load.openai_chat(model="m", profile=t), progress=False, connections=8
    )
    summary = result.summary()
    assert summary["responses"] == n and summary["errors"] == 0, summary
    c = http.client.HTTPConnection("127.0.0.1", emulator, timeout=5)
    try:
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
    finally:
        c.close()
    got = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert got["vllm:prompt_tokens_total"] == sum(t.prompt_tokens)
    assert got["vllm:generation_tokens_total"] == sum(t.output_tokens)
