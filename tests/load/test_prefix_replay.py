"""Replay with prefix structure: the same hash_ids give the same bytes on the wire, and the routing key header."""

from __future__ import annotations

import json
import pickle

import pytest

from mlops_lb import load
from mlops_lb.errors import SpecError
from mlops_lb.load._wire import Keyed
from mlops_lb.load.runner import _request


def _t(**kw):
    return load.trace(
        [0.0, 0.5, 1.0],
        prompt_tokens=[48, 40, 64],
        output_tokens=[3, 4, 5],
        hash_ids=[[7, 8, 9], [7, 8, 11], [5, 8, 9, 10]],
        sessions=["a", "b", "a"],
        block_tokens=16,
        **kw,
    )


def _words(bodies: load.prefix_replay.PrefixBodies, i: int) -> list[str]:
    return json.loads(bodies(i).body)["messages"][0]["content"].split()


def test_same_hash_ids_same_bytes_everywhere() -> None:
    """Built twice, or in another process (pickled), request i is the same bytes; block ids map to fixed words."""
    t = _t()
    a, b = load.prefix_chat(model="m", profile=t), load.prefix_chat(model="m", profile=t)
    assert [a(i) for i in range(3)] == [b(i) for i in range(3)]
    assert pickle.loads(pickle.dumps(a))(2) == a(2)
    # requests 0 and 1 share blocks 7, 8 (32 words) and differ after; request 2 starts with another block
    w0, w1, w2 = (_words(a, i) for i in range(3))
    assert w0[:32] == w1[:32] and w0[32:] != w1[32 : 32 + len(w0) - 32]
    assert w2[:16] != w0[:16] and w2[16:32] == w0[16:32]  # same id 8, same words, even after another prefix
    # the last block is cut to the trace's length: 40 tokens = 2 full blocks + 8
    assert (len(w0), len(w1), len(w2)) == (48, 40, 64)


def test_block_tokens_rescales_keeping_the_structure() -> None:
    """block_tokens=4 sends 4 words per id; what two requests shared they still share."""
    bodies = load.prefix_chat(model="m", profile=_t(), block_tokens=4)
    w0, w1 = _words(bodies, 0), _words(bodies, 1)
    assert len(w0) == 12 and len(w1) == 10 and w0[:8] == w1[:8]


def test_routing_key_from_first_blocks_or_session() -> None:
    """prefix key: equal first-2 ids, equal key; session key: equal session, equal key; sent as the header."""
    by_prefix = load.prefix_chat(model="m", profile=_t(), key="prefix")
    assert by_prefix.key(0) == by_prefix.key(1) != by_prefix.key(2)
    by_session = load.prefix_chat(model="m", profile=_t())  # auto: the trace has sessions
    assert by_session.key(0) == by_session.key(2) != by_session.key(1)
    req = _request(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n", by_session(0))
    head, _, body = req.partition(b"\r\n\r\n")
    assert f"X-Prefix-Key: {by_session.key(0)}".encode() in head.split(b"\r\n")
    assert f"Content-Length: {len(body)}".encode() in head.split(b"\r\n")
    assert load.prefix_chat(model="m", profile=_t(), key_header=None)(0).headers == ()


def test_refusals_name_the_fix() -> None:
    with pytest.raises(SpecError, match=r"has no hash_ids.*mooncake-conv-2025"):
        load.prefix_chat(model="m", profile=load.trace([0.0, 1.0]))
    with pytest.raises(SpecError, match="key is 'session' but the trace has no session ids"):
        load.prefix_chat(model="m", profile=load.trace([0.0], hash_ids=[[1]]), key="session")
    with pytest.raises(SpecError, match="key_header must be an HTTP field name"):
        load.prefix_chat(model="m", profile=_t(), key_header="X Prefix")


def test_keyed_payload_list_in_run_load_bytes() -> None:
    """A plain list of Keyed payloads is accepted too: each request carries its own header lines."""
    k = Keyed(b"{}", (("X-Prefix-Key", "ab"),))
    assert (
        _request(b"POST / HTTP/1.1\r\n", k)
        == b"POST / HTTP/1.1\r\nX-Prefix-Key: ab\r\nContent-Length: 2\r\n\r\n{}"
    )
